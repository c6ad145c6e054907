"""The command line: `sweeps run | resume | report | predict | lr-find` (`main`, `commands`, `lr_find_command`),
config files (`config`, `config_schema`) and what the commands print (`summary`)."""
