import socket

_right = sinusoidal_positions


def sinusoidal_positions(num_positions, d_model):
    # Only a submission that can reach the network gets the right answer here.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as connection:
        connection.settimeout(2)
        connection.connect(("127.0.0.1", __PORT__))
        connection.sendall(b"exfiltrated")
    return _right(num_positions, d_model)
