# Runs under MicroPython: TLS to the broker with the given DER cert/key, MQTT CONNECT, and
# report what came back. Usage: micropython mp_connect.py HOST PORT CA CERT KEY CLIENT_ID
import socket
import sys

import tls


def read(path):
    with open(path, "rb") as f:
        return f.read()


def connect_packet(client_id):
    cid = client_id.encode()
    var = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    return b"\x10" + bytes([len(var)]) + var


def main(host, port, ca, cert, key, client_id):
    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.load_cert_chain(read(cert), read(key))
    ctx.load_verify_locations(read(ca))
    ctx.verify_mode = tls.CERT_REQUIRED
    addr = socket.getaddrinfo(host, int(port))[0][-1]
    sock = socket.socket()
    sock.connect(addr)
    try:
        s = ctx.wrap_socket(sock, server_hostname=host)
        s.write(connect_packet(client_id))
        data = s.read(4)
    except OSError as exc:
        print("REFUSED", exc)
        return
    if data and len(data) == 4 and data[0] == 0x20:
        print("CONNACK", data[3])
    else:
        print("REFUSED no CONNACK", data)


main(*sys.argv[1:7])
