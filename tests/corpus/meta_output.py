def sinusoidal_positions(num_positions, d_model):
    return torch.empty(num_positions, d_model, device="meta")
