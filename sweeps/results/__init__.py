"""Results: the trial table and history (`result`), the kept models saved and loaded (`trained`), and the plots
(`plots`)."""
