def sinusoidal_positions(num_positions, d_model):
    return torch.full((num_positions, d_model), float("nan"))
