"""Training the built-in networks (the paper's recipe, one CPU to many hosts), their checkpoints, the record of a
run as a network (`trained.load_net`), its metrics, and Table 3's ablations."""
