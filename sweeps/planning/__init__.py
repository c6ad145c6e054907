"""Planning: a sweep's settings checked against the data (`checks`), a round's trials numbered, grouped by
structure and chunked to fit the memory budget (`planner`), and the lanes work items train in (`lanes`).
Nothing here compiles, trains or asks a strategy."""
