"""The FineWeb-Edu and FineWeb-2 sample texts (original, written for this project in the style
of educational web pages), one list per config; make_samples.py writes them as Parquet."""

# A run-on "sentence" of more than 256 characters without any punctuation, to exercise the
# segmenter's re-splitting of long sentences.
RUN_ON = (
    "The spring workshop covers soil preparation and seed selection and watering schedules and "
    "companion planting and the use of mulch and compost and the control of common pests without "
    "chemicals and the harvest and storage of vegetables and the saving of seeds for the following "
    "year and the planning of crop rotation over several seasons"
)

ENG = [
    # Long enough for several SaT blocks of 512 tokens with the tiny test tokenizer.
    "How Volcanoes Form\n\nA volcano is an opening in the crust of a planet through which molten "
    "rock, ash and gases escape from below the surface. On Earth, most volcanoes are found where "
    "tectonic plates meet. The outer shell of our planet is broken into large slabs that move a "
    "few centimetres every year, roughly as fast as your fingernails grow. Where two plates pull "
    "apart, hot rock from the mantle rises to fill the gap. As it rises, the pressure drops and "
    "part of the rock melts. This molten rock is called magma while it is underground and lava "
    "once it reaches the surface.\n\nWhere one plate slides beneath another, a different process "
    "takes place. The sinking plate carries water down with it. The water lowers the melting point "
    "of the surrounding mantle, which produces magma rich in silica. Silica makes magma thick and "
    "sticky, so gas bubbles cannot escape easily. Pressure builds up until the volcano erupts, "
    "sometimes with enormous force. The volcanoes of the Pacific Ring of Fire, such as those in "
    "Japan, Indonesia and the Andes, were formed in this way.\n\nNot every volcano sits on a plate "
    "boundary. Some form above hot spots, which are columns of unusually hot rock rising from deep "
    "inside the mantle. The Hawaiian Islands are the best known example. As the Pacific Plate "
    "moves slowly to the northwest over a stationary hot spot, new volcanoes are born and older "
    "ones drift away and become extinct. That is why the islands get older as you travel from "
    "Hawaii towards Kauai.\n\nScientists classify volcanoes by their shape. Shield volcanoes have "
    "gentle slopes built from many layers of runny lava. Stratovolcanoes are steep cones made of "
    "alternating layers of lava and ash. Cinder cones are small, steep hills formed from fragments "
    "of lava thrown into the air during a single eruption. Each shape tells us something about the "
    "kind of magma that fed it.\n\nWhy does this matter? Around eight hundred million people live "
    "within one hundred kilometres of an active volcano. Volcanologists monitor small earthquakes, "
    "changes in the shape of the ground and the gases escaping from vents. When these signals "
    "change quickly, authorities can warn nearby communities and organise evacuations. Volcanoes "
    "are not only dangerous, however. Volcanic soils are among the most fertile in the world, and "
    "the heat stored underground can be used to generate clean electricity. Countries such as "
    "Iceland and Kenya produce a large share of their power from geothermal plants.\n\nActivity "
    "for the classroom: fill a small plastic bottle with warm water, a spoon of baking soda and a "
    "drop of washing-up liquid. Place it inside a mound of sand and add vinegar. The foam that "
    "pours out is not real lava, of course, but it shows how gas pressure can push material up and "
    "out of a narrow vent. Ask your pupils to compare the model with a real eruption. What is "
    "similar? What is different? Encourage them to write down their observations before they "
    "discuss them.",
    # Long, with one run-on sentence of more than 256 characters.
    "Planning a School Garden\n\nA school garden turns the playground into an outdoor classroom. "
    "Pupils learn where food comes from, how plants grow and why insects matter. Teachers can link "
    "almost every subject to the garden, from measuring beds in mathematics to writing seed "
    "diaries in language lessons.\n\nStart small. A single raised bed of two square metres is "
    "enough for a class of thirty children in the first year. Choose a spot that receives at least "
    "six hours of sunlight a day and that is close to a water tap. Involve the pupils in every "
    "decision, because children look after what they have helped to build.\n\n"
    + RUN_ON
    + "\n\nEasy crops for beginners include radishes, lettuce, peas and sunflowers. Radishes are "
      "ready in about four weeks, which keeps young gardeners motivated. Peas climb and need "
      "support, so pupils can build a frame from sticks and string. Sunflowers grow taller than "
      "the children themselves and are a favourite for measuring competitions.\n\nKeep a garden "
      "journal. Every week, a different group records the weather, the height of the plants and "
      "anything unusual they notice, such as holes in leaves or the first flowers. Over the year "
      "the journal becomes a valuable record that the class can analyse with charts and tables. It "
      "also helps the next class to avoid the same mistakes.\n\nFinally, plan for the holidays. "
      "Gardens do not stop growing when school closes. Ask families to sign up for watering duty, "
      "or choose crops that are harvested before the summer break. With a little planning, the "
      "garden will welcome the pupils back in September with flowers and seeds.",
    "What Is Photosynthesis?\n\nPhotosynthesis is the process plants use to make their own food. "
    "Inside the leaves, tiny structures called chloroplasts capture the energy of sunlight. The "
    "plant takes in carbon dioxide from the air through small pores and water from the soil "
    "through its roots. Using the energy of light, it turns these simple ingredients into glucose, "
    "a sugar that stores energy. Oxygen is released as a by-product, and that is the oxygen we "
    "breathe. Without photosynthesis, there would be almost no life on land.",
    "Fractions in Everyday Life\n\nFractions describe parts of a whole. When you cut a pizza into "
    "eight equal slices and eat three, you have eaten three eighths of the pizza. The number on "
    "the bottom, the denominator, tells you how many equal parts the whole has. The number on top, "
    "the numerator, tells you how many of those parts you are talking about. Recipes, clocks and "
    "shop discounts all use fractions. Half an hour is thirty minutes, and a quarter of a cake is "
    "two slices of eight.",
    "The Water Cycle\n\nWater on Earth is always moving. The sun heats oceans, lakes and rivers, "
    "and some of the water evaporates into the air as vapour. As the warm air rises, it cools, and "
    "the vapour condenses into tiny droplets that form clouds. When the droplets join together and "
    "become heavy, they fall as rain, snow or hail. This is called precipitation. Some of the "
    "water soaks into the ground and some flows back to the sea in rivers. Then the cycle begins "
    "again.",
    "Tips for Learning a New Language\n\nPractise a little every day rather than a lot once a "
    "week. Short, regular sessions help your memory more than long ones. Listen to songs and "
    "podcasts in the language, even if you do not understand every word. Label objects around your "
    "home with their names. Find a partner to talk with, online or in person. Most importantly, do "
    "not be afraid of making mistakes, because every mistake is a chance to learn something new.",
    # Whitespace-only and empty documents: the segmenter must quarantine them as empty_text.
    "   \n\t  ",
    "",
    "Why the Sky Is Blue\n\nSunlight looks white, but it is a mixture of all the colours of the "
    "rainbow. When light enters the atmosphere, it collides with molecules of nitrogen and oxygen. "
    "Blue light has a shorter wavelength than red light, so it is scattered much more strongly in "
    "all directions. When we look up, we see this scattered blue light coming from every part of "
    "the sky. At sunset, light travels through more air, most of the blue is scattered away, and "
    "the sky turns orange and red.",
    "Healthy Sleep for Teenagers\n\nTeenagers need between eight and ten hours of sleep each "
    "night. During adolescence, the body clock shifts, so many young people feel awake late in the "
    "evening and tired in the morning. Screens make the problem worse, because their light tells "
    "the brain that it is still daytime. Try to switch off phones an hour before bed. Keep the "
    "bedroom cool, dark and quiet. A regular routine, even at weekends, helps the body know when "
    "it is time to rest.",
    "Reading a Map\n\nEvery good map has a title, a scale, a legend and a compass rose. The title "
    "tells you what the map shows. The scale tells you how distances on the map relate to "
    "distances on the ground; for example, one centimetre might represent one kilometre. The "
    "legend explains the symbols, such as blue lines for rivers and small crosses for churches. "
    "The compass rose shows which way is north. With these four tools you can plan a walk, find a "
    "campsite or follow a river to the sea.",
    "The Life Cycle of a Butterfly\n\nA butterfly goes through four stages. It begins as an egg "
    "laid on a leaf. A caterpillar hatches and spends its days eating and growing, shedding its "
    "skin several times. Then it forms a chrysalis, a hard case in which its body is completely "
    "rebuilt. After a few weeks, an adult butterfly emerges, dries its wings and flies away to "
    "find a mate. Scientists call this complete metamorphosis.",
]

FRA = [
    "Le cycle de l'eau expliqué aux enfants\n\nL'eau de la Terre ne disparaît jamais : elle change "
    "simplement d'état. Le soleil chauffe la mer et les rivières, et une partie de l'eau "
    "s'évapore. La vapeur monte dans le ciel, se refroidit et forme des nuages. Quand les gouttes "
    "deviennent trop lourdes, elles tombent sous forme de pluie ou de neige. L'eau rejoint ensuite "
    "les rivières, les nappes souterraines et enfin la mer. Puis tout recommence !",
    "Comment fonctionne un volcan ?\n\nSous nos pieds, la roche est parfois si chaude qu'elle "
    "fond. Cette roche fondue s'appelle le magma. Plus léger que la roche qui l'entoure, il "
    "remonte lentement vers la surface. Lorsqu'il trouve une fissure, il s'échappe : c'est "
    "l'éruption. On parle alors de lave. Certains volcans produisent des coulées tranquilles, "
    "d'autres explosent et projettent des cendres à des kilomètres de hauteur.",
    "Bien apprendre ses leçons\n\nRelire une leçon ne suffit pas pour la retenir. Il vaut mieux se "
    "poser des questions et essayer d'y répondre sans regarder le cahier. Expliquer la leçon à "
    "quelqu'un d'autre est aussi très efficace. Enfin, il est utile de revoir la leçon le "
    "lendemain, puis une semaine plus tard. Ces rappels espacés aident la mémoire à long terme.",
    "La photosynthèse\n\nLes plantes fabriquent leur propre nourriture grâce à la lumière du "
    "soleil. Dans leurs feuilles, la chlorophylle capte l'énergie lumineuse. La plante utilise "
    "cette énergie pour transformer l'eau et le dioxyde de carbone en sucre. Elle rejette de "
    "l'oxygène dans l'air. C'est pourquoi les forêts sont souvent appelées les poumons de la "
    "planète.",
    "Les fractions au quotidien\n\nUne fraction représente une partie d'un tout. Si l'on partage "
    "une tarte en quatre parts égales et que l'on en mange une, on a mangé un quart de la tarte. "
    "Le nombre du bas, le dénominateur, indique en combien de parts le tout est divisé. Le nombre "
    "du haut, le numérateur, indique combien de parts on considère.",
    "Pourquoi les feuilles changent-elles de couleur en automne ?\n\nEn été, les feuilles sont "
    "vertes grâce à la chlorophylle. Quand les jours raccourcissent, l'arbre cesse d'en produire. "
    "Le vert disparaît et laisse voir d'autres pigments, jaunes et orangés, qui étaient déjà "
    "présents. Certains arbres fabriquent aussi des pigments rouges. Ensuite, les feuilles sèchent "
    "et tombent.",
]

DEU = [
    "Wie entsteht ein Regenbogen?\n\nEin Regenbogen entsteht, wenn Sonnenlicht auf Regentropfen "
    "trifft. Das weiße Licht wird beim Eintritt in den Tropfen gebrochen und in seine Farben "
    "zerlegt. An der Rückseite des Tropfens wird es gespiegelt und beim Austritt noch einmal "
    "gebrochen. Deshalb sehen wir die Farben Rot, Orange, Gelb, Grün, Blau und Violett in einem "
    "Bogen. Einen Regenbogen sieht man nur, wenn die Sonne im Rücken steht.",
    "Der Wasserkreislauf\n\nDie Sonne erwärmt das Wasser in Meeren, Seen und Flüssen. Ein Teil "
    "davon verdunstet und steigt als Wasserdampf auf. In der Höhe kühlt der Dampf ab und bildet "
    "Wolken. Wenn die Tropfen groß genug sind, fallen sie als Regen oder Schnee zur Erde. Das "
    "Wasser fließt in Bächen und Flüssen zurück ins Meer, und der Kreislauf beginnt von vorn.",
    "Tipps für das Lernen zu Hause\n\nEin fester Arbeitsplatz hilft, sich zu konzentrieren. Lege "
    "das Handy während der Hausaufgaben in ein anderes Zimmer. Plane kurze Pausen ein, zum "
    "Beispiel fünf Minuten nach jeder halben Stunde. Schwierige Aufgaben erledigst du am besten "
    "zuerst, solange du noch frisch bist. Und vergiss nicht, genug Wasser zu trinken!",
    "Warum haben wir Jahreszeiten?\n\nDie Erdachse ist um etwa 23 Grad geneigt. Während die Erde "
    "die Sonne umkreist, ist mal die Nordhalbkugel und mal die Südhalbkugel stärker zur Sonne "
    "geneigt. Die Halbkugel, die zur Sonne zeigt, erhält steileres Licht und längere Tage: Dort "
    "ist Sommer. Auf der anderen Halbkugel ist zur gleichen Zeit Winter.",
    "Bienen und ihre Bedeutung\n\nBienen bestäuben einen großen Teil unserer Nutzpflanzen. Wenn "
    "eine Biene Nektar sammelt, bleibt Blütenstaub an ihrem Körper haften und gelangt so zur "
    "nächsten Blüte. Ohne diese Bestäubung gäbe es viel weniger Äpfel, Kirschen und Gurken. "
    "Blühende Gärten und Wiesen helfen den Bienen, genug Nahrung zu finden.",
    "Brüche verstehen\n\nEin Bruch beschreibt einen Teil eines Ganzen. Teilt man eine Pizza in "
    "acht gleiche Stücke und isst drei davon, hat man drei Achtel gegessen. Die untere Zahl heißt "
    "Nenner, die obere Zahl heißt Zähler. Brüche begegnen uns beim Kochen, beim Einkaufen und auf "
    "der Uhr.",
]

ARB = [
    "دورة الماء في الطبيعة\n\nتسخن الشمس مياه البحار والأنهار فيتبخر جزء منها ويصعد إلى الجو. يبرد "
    "بخار الماء في الأعلى ويتكاثف مكونا الغيوم. عندما تثقل قطرات الماء تسقط على الأرض على شكل مطر "
    "أو ثلج. تجري المياه بعد ذلك في الأنهار وتعود إلى البحر، ثم تبدأ الدورة من جديد.",
    "كيف تنمو النباتات؟\n\nتحتاج النباتات إلى الماء والضوء والهواء لكي تنمو. تمتص الجذور الماء من "
    "التربة، وتلتقط الأوراق ضوء الشمس. تصنع النبتة غذاءها بنفسها في عملية تسمى البناء الضوئي. "
    "وتطلق في أثناء ذلك غاز الأكسجين الذي نتنفسه.",
    "نصائح للمذاكرة\n\nاختر مكانا هادئا ومضاء جيدا للمذاكرة. قسم وقتك إلى فترات قصيرة تتخللها "
    "استراحات. اكتب ملخصا لكل درس بكلماتك الخاصة. وراجع ما تعلمته في اليوم التالي حتى يثبت في "
    "ذاكرتك.",
    "لماذا تكون السماء زرقاء؟\n\nيتكون ضوء الشمس من ألوان كثيرة. عندما يدخل الضوء الغلاف الجوي "
    "يتشتت اللون الأزرق أكثر من غيره. لذلك نرى السماء زرقاء في النهار. أما عند الغروب فيقطع الضوء "
    "مسافة أطول فتظهر السماء برتقالية.",
    "الكسور في حياتنا اليومية\n\nالكسر جزء من كل. إذا قسمنا كعكة إلى أربعة أجزاء متساوية وأكلنا "
    "جزءا واحدا فقد أكلنا ربع الكعكة. نستخدم الكسور في الطبخ والتسوق وقراءة الساعة.",
]

HIN = [
    "जल चक्र क्या है?\n\nसूरज की गर्मी से समुद्र, नदियों और झीलों का पानी भाप बनकर ऊपर उठता है। "
    "ऊँचाई पर भाप ठंडी होकर बादल बनाती है। जब बादलों की बूँदें भारी हो जाती हैं, तो वे बारिश के "
    "रूप में धरती पर गिरती हैं। यह पानी नदियों के रास्ते फिर से समुद्र में पहुँच जाता है। इस तरह "
    "यह चक्र चलता रहता है।",
    "पौधे अपना भोजन कैसे बनाते हैं?\n\nपौधे सूरज की रोशनी की मदद से अपना भोजन खुद बनाते हैं। "
    "पत्तियों में मौजूद हरा रंग रोशनी को पकड़ता है। पौधा पानी और हवा से ली गई कार्बन डाइऑक्साइड को "
    "मिलाकर शक्कर बनाता है। इस प्रक्रिया को प्रकाश संश्लेषण कहते हैं।",
    "पढ़ाई के लिए अच्छी आदतें\n\nरोज़ एक तय समय पर पढ़ाई करें। पढ़ते समय फ़ोन को दूर रखें। हर पाठ "
    "के बाद छोटे सवाल बनाकर खुद से पूछें। अगले दिन पिछला पाठ दोहराना न भूलें।",
    "हमारे शरीर में हड्डियाँ\n\nएक वयस्क व्यक्ति के शरीर में दो सौ छह हड्डियाँ होती हैं। हड्डियाँ "
    "शरीर को आकार देती हैं और अंदर के अंगों की रक्षा करती हैं। मज़बूत हड्डियों के लिए दूध, हरी "
    "सब्ज़ियाँ और रोज़ का व्यायाम ज़रूरी है।",
    "मौसम क्यों बदलते हैं?\n\nपृथ्वी की धुरी थोड़ी झुकी हुई है। जब पृथ्वी सूरज का चक्कर लगाती है, "
    "तो कभी उत्तरी भाग सूरज की ओर झुका होता है और कभी दक्षिणी भाग। जिस भाग पर सूरज की किरणें सीधी "
    "पड़ती हैं, वहाँ गर्मी होती है।",
]

RUS = [
    "Круговорот воды в природе\n\nСолнце нагревает воду в морях, реках и озёрах, и часть её "
    "испаряется. Водяной пар поднимается вверх, охлаждается и образует облака. Когда капли "
    "становятся тяжёлыми, они падают на землю в виде дождя или снега. Вода стекает в реки и "
    "возвращается в море. Затем всё начинается сначала.",
    "Как появляется радуга?\n\nРадуга появляется, когда солнечный свет проходит через капли дождя. "
    "Белый свет преломляется и распадается на цвета. Поэтому мы видим красный, оранжевый, жёлтый, "
    "зелёный, голубой, синий и фиолетовый. Радугу можно увидеть, только если солнце находится у "
    "вас за спиной.",
    "Советы для подготовки к экзамену\n\nНачинайте готовиться заранее, а не в последнюю ночь. "
    "Составьте план и повторяйте материал понемногу каждый день. Решайте задачи прошлых лет. "
    "Хорошо высыпайтесь перед экзаменом, потому что сон помогает памяти.",
    "Зачем нужны леса?\n\nЛеса производят кислород и очищают воздух. Корни деревьев удерживают "
    "почву и защищают её от размывания. В лесах живут тысячи видов животных и растений. Поэтому "
    "важно беречь леса и сажать новые деревья.",
    "Что такое дроби?\n\nДробь показывает часть целого. Если разрезать пирог на восемь равных "
    "частей и съесть три, то съедено три восьмых пирога. Нижнее число называется знаменателем, "
    "верхнее — числителем.",
]

# cmn_Hani: FineWeb-2 does not tell simplified from traditional; the relabel stage must.
CMN = [
    # Simplified.
    "水的循环\n\n太阳把海洋、河流和湖泊里的水晒热，一部分水变成水蒸气升到空中。水蒸气在高处遇冷，凝结成小水滴，形成云。小水滴越聚越多，变得太重时，就会以雨或雪的形式落到地面。这些水流进河里"
    "，最后回到大海。这样的过程不断重复，叫做水循环。",
    # Simplified.
    "怎样养成学习的好习惯\n\n每天在固定的时间学习，可以让大脑更容易进入状态。学习时把手机放在别的房间。学完一课以后，试着用自己的话讲给家人听。第二天再复习一遍，记忆会更牢固。",
    # Simplified.
    "为什么天空是蓝色的？\n\n阳光看起来是白色的，其实包含了各种颜色。阳光进入大气层时，蓝光比红光更容易被空气分子散射。所以我们抬头看天空时，看到的是到处散射的蓝光。傍晚时，阳光要穿过更厚的"
    "空气，天空就变成了橙红色。",
    # Traditional.
    "植物怎樣製造養分\n\n植物靠陽光製造自己的食物。葉子裡的葉綠素吸收光能，把根部吸收的水和空氣中的二氧化碳變成糖。這個過程叫做光合作用，同時會釋放出我們呼吸的氧氣。沒有光合作用，陸地上幾乎"
    "不會有生命。",
    # Traditional.
    "認識分數\n\n分數表示一個整體的一部分。把一個蛋糕平均切成八塊，吃掉三塊，就是吃了八分之三。下面的數字叫做分母，表示整體被分成幾份；上面的數字叫做分子，表示取了其中幾份。",
    # Traditional.
    "為什麼會有四季？\n\n地球的自轉軸是傾斜的。地球繞著太陽公轉時，北半球和南半球輪流比較靠近陽光直射的方向。陽光直射的半球白天較長、氣溫較高，就是夏天；另一個半球則是冬天。",
    # Only characters shared by both systems: hanzidentifier says BOTH.
    "明天早上，大家一起去山上看日出。",
    # Mostly traditional with a few simplified-only characters: hanzidentifier says MIXED.
    "學習語言需要每天練習。聽歌、看電影、和朋友聊天，都是很好的方法。这样进步会更快。",
]

# The FineWeb-2 configs of the shipped sample: config -> (ISO 639-3 language, script, texts).
FINEWEB2 = {
    "fra_Latn": ("fra", "Latn", FRA),
    "deu_Latn": ("deu", "Latn", DEU),
    "arb_Arab": ("arb", "Arab", ARB),
    "hin_Deva": ("hin", "Deva", HIN),
    "rus_Cyrl": ("rus", "Cyrl", RUS),
    "cmn_Hani": ("cmn", "Hani", CMN),
}
