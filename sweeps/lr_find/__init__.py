"""The learning-rate range test: one short run over rising rates (`finder`) and the curve it reads (`curve`)."""
