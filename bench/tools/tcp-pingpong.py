"""Loopback TCP ping-pong between two processes (300-byte messages, TCP_NODELAY): round-trip
time back to back and paced one per ms. The platform's floor for one wake-up each way.

    python3 bench/tools/tcp-pingpong.py
"""
import os
import socket
import time

N = 5000


def server(port_w):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    os.write(port_w, str(s.getsockname()[1]).encode())
    os.close(port_w)
    c, _ = s.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        d = c.recv(4096)
        if not d:
            return
        c.sendall(d)


r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    server(w)
    os._exit(0)
os.close(w)
port = int(os.read(r, 16))
os.close(r)
c = socket.create_connection(("127.0.0.1", port))
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
msg = b"x" * 300
for mode in ("back-to-back", "paced 1/ms"):
    rtts = []
    due = time.perf_counter()
    for _ in range(N):
        if mode != "back-to-back":
            due += 0.001
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        t0 = time.perf_counter_ns()
        c.sendall(msg)
        got = 0
        while got < len(msg):
            got += len(c.recv(4096))
        rtts.append((time.perf_counter_ns() - t0) / 1000)
    rtts.sort()
    q = lambda p: rtts[min(len(rtts) - 1, int(p * len(rtts)))]
    print(f"{mode}: n={N} RTT p50 {q(.5):.0f} us, p90 {q(.9):.0f} us, p99 {q(.99):.0f} us, max {rtts[-1]:.0f} us")
c.close()
os.waitpid(pid, 0)
