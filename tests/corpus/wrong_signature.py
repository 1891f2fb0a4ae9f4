def sinusoidal_positions(num_positions):
    return torch.zeros(num_positions, 4)
