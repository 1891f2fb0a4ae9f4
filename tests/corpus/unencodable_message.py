# An exception whose message holds a lone surrogate and control characters.
def sinusoidal_positions(num_positions, d_model):
    raise ValueError("bad \ud800 value\x1b[2J\r\nsecond line")
