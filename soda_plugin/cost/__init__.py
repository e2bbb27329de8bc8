"""What a stage cost: `recorder` writes `cost.json` (wall time, optimizer steps, GPU-hours,
peak memory) into the stage's output folder; `table` compares runs (`soda cost`)."""
