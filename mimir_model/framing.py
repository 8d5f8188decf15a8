"""How text is framed for the model, defined once for data preparation, training, generation
and evaluation (paper Table 6 and section 3).

- Every pre-training document and every assistant turn ends with the sentence END_OF_TEXT,
  embedded as English (END_OF_TEXT_LANG) whatever the text's language: the paper prints it in
  English only, and generation stops on the cosine to that one fixed embedding
  (>= STOP_COSINE). It is not translated.
- An instruction context is ["User turn." in the conversation's language] + prompt sentences +
  ["Assistant turn." in that language] (TURN_MARKERS; `frame_prompt`); multi-turn contexts
  repeat the pattern with the earlier responses, without their END_OF_TEXT.
- The evaluation tasks' prompts are laid out as in the instruction data that trains them
  (`mlqa_prompt`, `xlsum_prompt`), and XL-WSD asks for a definition with XLWSD_PROMPT.
"""

from __future__ import annotations

END_OF_TEXT = "End of text."
END_OF_TEXT_LANG = "eng_Latn"
STOP_COSINE = 0.90

# "User turn." and "Assistant turn." for every language we train on (the 46 pre-training
# languages, Chinese in both scripts). Reviewed for a neutral "it is X's turn" reading with the
# language's own sentence-final punctuation (none in Thai). Native-speaker review is still
# welcome: a change here changes the training data of that language.
TURN_MARKERS: dict[str, tuple[str, str]] = {
    "eng_Latn": ("User turn.", "Assistant turn."),
    "als_Latn": ("Radha e përdoruesit.", "Radha e asistentit."),
    "arb_Arab": ("دور المستخدم.", "دور المساعد."),
    "ben_Beng": ("ব্যবহারকারীর পালা।", "সহকারীর পালা।"),
    "bul_Cyrl": ("Ред на потребителя.", "Ред на асистента."),
    "cat_Latn": ("Torn de l'usuari.", "Torn de l'assistent."),
    "ces_Latn": ("Na řadě je uživatel.", "Na řadě je asistent."),
    "dan_Latn": ("Brugerens tur.", "Assistentens tur."),
    "deu_Latn": ("Der Benutzer ist an der Reihe.", "Der Assistent ist an der Reihe."),
    "ell_Grek": ("Σειρά του χρήστη.", "Σειρά του βοηθού."),
    "est_Latn": ("Kasutaja kord.", "Assistendi kord."),
    "fin_Latn": ("Käyttäjän vuoro.", "Avustajan vuoro."),
    "fra_Latn": ("Tour de l'utilisateur.", "Tour de l'assistant."),
    "glg_Latn": ("Quenda do usuario.", "Quenda do asistente."),
    "heb_Hebr": ("תור המשתמש.", "תור העוזר."),
    "hin_Deva": ("उपयोगकर्ता की बारी।", "सहायक की बारी।"),
    "hrv_Latn": ("Red je na korisniku.", "Red je na asistentu."),
    "hun_Latn": ("A felhasználó következik.", "Az asszisztens következik."),
    "ind_Latn": ("Giliran pengguna.", "Giliran asisten."),
    "ita_Latn": ("Turno dell'utente.", "Turno dell'assistente."),
    "jpn_Jpan": ("ユーザーの番です。", "アシスタントの番です。"),
    "kat_Geor": ("მომხმარებლის ჯერი.", "ასისტენტის ჯერი."),
    "kor_Hang": ("사용자 차례입니다.", "어시스턴트 차례입니다."),
    "lit_Latn": ("Naudotojo eilė.", "Asistento eilė."),
    "lvs_Latn": ("Lietotāja kārta.", "Asistenta kārta."),
    "mar_Deva": ("वापरकर्त्याची पाळी.", "सहाय्यकाची पाळी."),
    "mkd_Cyrl": ("Ред е на корисникот.", "Ред е на асистентот."),
    "nld_Latn": ("Beurt van de gebruiker.", "Beurt van de assistent."),
    "nob_Latn": ("Brukerens tur.", "Assistentens tur."),
    "pes_Arab": ("نوبت کاربر.", "نوبت دستیار."),
    "pol_Latn": ("Kolej użytkownika.", "Kolej asystenta."),
    "por_Latn": ("Vez do usuário.", "Vez do assistente."),
    "ron_Latn": ("Rândul utilizatorului.", "Rândul asistentului."),
    "rus_Cyrl": ("Очередь пользователя.", "Очередь ассистента."),
    "slk_Latn": ("Na rade je používateľ.", "Na rade je asistent."),
    "slv_Latn": ("Na vrsti je uporabnik.", "Na vrsti je asistent."),
    "spa_Latn": ("Turno del usuario.", "Turno del asistente."),
    "srp_Cyrl": ("Ред је на кориснику.", "Ред је на асистенту."),
    "swe_Latn": ("Användarens tur.", "Assistentens tur."),
    "swh_Latn": ("Zamu ya mtumiaji.", "Zamu ya msaidizi."),
    "tha_Thai": ("ถึงตาผู้ใช้", "ถึงตาผู้ช่วย"),
    "tur_Latn": ("Kullanıcının sırası.", "Asistanın sırası."),
    "ukr_Cyrl": ("Черга користувача.", "Черга асистента."),
    "urd_Arab": ("صارف کی باری۔", "معاون کی باری۔"),
    "vie_Latn": ("Lượt của người dùng.", "Lượt của trợ lý."),
    "zho_Hans": ("轮到用户。", "轮到助手。"),
    "zho_Hant": ("輪到使用者。", "輪到助理。"),
}


# XL-WSD asks for a definition; the instance's sentence and word fill this template.
XLWSD_PROMPT = 'What is the meaning of the word "{target}" in the following sentence? {sentence}'


def turn_markers(lang: str) -> tuple[str, str]:
    """("User turn.", "Assistant turn.") in lang."""
    if lang not in TURN_MARKERS:
        raise ValueError(f"no translated turn markers for {lang}; known: {sorted(TURN_MARKERS)}")
    return TURN_MARKERS[lang]


def frame_prompt(sentences: list[str], lang: str) -> list[str]:
    """The context of a single-turn instruction: user marker, prompt sentences, assistant
    marker."""
    user, assistant = turn_markers(lang)
    return [user, *sentences, assistant]


def mlqa_prompt(context: str, question: str) -> str:
    return f"{context}\n\n{question}"


def xlsum_prompt(text: str) -> str:
    return text
