"""Results: the trial table and history (`result`), the kept models saved and loaded (`trained`), the best of them
as one model that averages their predictions (`ensemble`), and the plots (`plots`)."""
