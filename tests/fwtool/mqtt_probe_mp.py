# Runs under MicroPython: TLS client-cert handshake to a broker, MQTT 3.1.1 CONNECT, print CONNACK.
# argv: <certs dir> <port> <client id> <key file name>
import socket
import sys

import tls


def read(path):
    with open(path, "rb") as f:
        return f.read()


def main():
    certs, port, cid, keyname = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.load_cert_chain(read(certs + "/cert.der"), read(certs + "/" + keyname))
    ctx.load_verify_locations(read(certs + "/ca.der"))
    ctx.verify_mode = tls.CERT_REQUIRED
    sock = socket.socket()
    sock.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
    cidb = cid.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + bytes([len(cidb) >> 8, len(cidb) & 255]) + cidb
    try:
        # a refused client certificate shows as OSError 32 at the handshake or the first write
        conn = ctx.wrap_socket(sock, server_hostname="localhost")
        conn.write(bytes([0x10, len(body)]) + body)
        reply = conn.read(4)
    except OSError as exc:
        print("ERROR", exc)
        return
    print("CONNACK", reply.hex() if reply else "none")
    conn.close()


main()
