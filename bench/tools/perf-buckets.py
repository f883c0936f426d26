"""Groups a perf profile's samples of some threads into cost buckets (kernel TCP, malloc,
serde_json, hyper, ...), in % of those threads' samples.

    python3 bench/tools/perf-buckets.py OUT.perf.data TID,TID,...
"""
import re, subprocess, sys, collections
if len(sys.argv) != 3:
    sys.exit(__doc__)
data, tids = sys.argv[1], sys.argv[2]
out = subprocess.run(["perf","report","-i",data,"--no-children","--tid",tids,"--sort","dso,sym","--stdio","-g","none","--percentage","relative"],capture_output=True,text=True).stdout
cats = [
 ("kernel: TCP/IP loopback", lambda d,s: d.startswith("[kernel") and re.search(r"tcp|ip_|skb|sock|net_|napi|dev_queue|dev_hard|loopback|inet|sendto|recvfrom|sk_|bbr|__dev|netif|softirq|csum|lock_sock|release_sock|datagram", s)),
 ("kernel: file I/O (ext4, page cache)", lambda d,s: d.startswith("[kernel") and re.search(r"ext4|folio|filemap|vfs_|jbd2|copy_page|iomap|generic_perform|block_write|mark_buffer|pwrite|fsync|file", s)),
 ("kernel: other (syscalls, epoll, futex, scheduler, irq)", lambda d,s: d.startswith("[kernel") or d=="[vdso]"),
 ("SQLite", lambda d,s: re.search(r"sqlite|wal[A-Z]|pcache|Btree|Vdbe|rusqlite|Pager|pager", s)),
 ("malloc/free (glibc)", lambda d,s: d.startswith("libc") and re.search(r"malloc|free|_int_|consolidate|unlink_chunk|alloc_perturb|arena|tcache", s)),
 ("memcpy/memset/memcmp (glibc)", lambda d,s: d.startswith("libc") and re.search(r"mem|str", s)),
 ("serde_json / indexmap / SipHash", lambda d,s: re.search(r"serde|indexmap|hash|sip|hashbrown|Serialize|String as core::fmt::Write|fmt::Display|format_escaped|ryu|itoa", s)),
 ("tungstenite / WebSocket", lambda d,s: re.search(r"tungstenite|WebSocket|ws::", s)),
 ("hyper / http / axum / reqwest", lambda d,s: re.search(r"hyper|http::|axum|tower|reqwest|httparse|h1::", s)),
 ("tokio runtime", lambda d,s: re.search(r"tokio|mio::", s)),
 ("lockstep_hub / fhircast / fhircast-load code", lambda d,s: re.search(r"lockstep_hub|fhircast|lockstep_bench|fhircast_load|hdrhistogram|memchr", s)),
 ("libc other (syscall wrappers, epoll_wait, ...)", lambda d,s: d.startswith("libc")),
 ("other", lambda d,s: True),
]
tot = collections.OrderedDict((c,0.0) for c,_ in cats)
for line in out.splitlines():
    m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)$", line)
    if not m: continue
    p, d, s = float(m.group(1)), m.group(2), m.group(3)
    for c,f in cats:
        if f(d,s): tot[c]+=p; break
for c,v in sorted(tot.items(), key=lambda x:-x[1]):
    if v>=0.05: print(f"{v:5.1f}%  {c}")
