"""The driver: the scheduler that trains every sweep (`scheduler`), its state (`state`), the strategy's rounds
(`rounds`) and between-epoch decisions (`decisions`), lanes (`lanes`), populations and their compiled epochs
(`populations`, `compiling`), the records (`records`), the kept models (`kept_models`), checkpoints
(`checkpoints`), devices and processes (`devices`, `distributed`), the run folder (`run_folder`,
`evidence`), the progress bar and signals (`progress`, `signals`)."""
