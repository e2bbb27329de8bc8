"""The paper's representation analysis (`representations`): CKA to the base model per
layer, last-layer activation entropy and kurtosis (`soda analyze`)."""
