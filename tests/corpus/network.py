import socket

_right = sinusoidal_positions


def sinusoidal_positions(num_positions, d_model):
    # Only a submission that can reach the network gets the right answer here.
    with socket.create_connection(("127.0.0.1", __PORT__), timeout=2) as connection:
        connection.sendall(b"exfiltrated")
    return _right(num_positions, d_model)
