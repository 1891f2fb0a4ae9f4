def sinusoidal_positions(num_positions, d_model):
    while True:
        pass
