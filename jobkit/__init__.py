"""What every job shares: typed YAML configs (config), the command line (cli) and the
connection to Ray (cluster)."""
