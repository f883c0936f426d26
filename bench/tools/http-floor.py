"""HTTP/1.1 keep-alive `GET /` against a running hub, paced one per ms: the round trip through
hyper + axum + the guard middleware with a minimal client.

    python3 bench/tools/http-floor.py PORT [COUNT]
"""
import http.client
import socket
import sys
import time

port = int(sys.argv[1])
count = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
c = http.client.HTTPConnection("127.0.0.1", port)
c.connect()
c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
rtts = []
due = time.perf_counter()
for _ in range(count):
    due += 0.001
    wait = due - time.perf_counter()
    if wait > 0:
        time.sleep(wait)
    t0 = time.perf_counter_ns()
    c.request("GET", "/", headers={"Host": f"127.0.0.1:{port}"})
    r = c.getresponse()
    r.read()
    rtts.append((time.perf_counter_ns() - t0) / 1000)
    assert r.status == 200, r.status
rtts.sort()
q = lambda p: rtts[min(len(rtts) - 1, int(p * len(rtts)))]
print(f"GET / paced 1/ms, n={count}: p50 {q(.5):.0f} us, p90 {q(.9):.0f} us, p99 {q(.99):.0f} us")
