"""The two embedded data sets: a pretraining corpus (+ tokenizer) and an instruction set."""
