"""`edgecnn run pipeline.toml`: the whole job as one command, one run folder and a manifest."""
