"""A soak of the web app (``ganforge serve``): many mixed requests from concurrent clients on 127.0.0.1.

The server runs as ``python -m ganforge serve`` in its own process, with its own temporary folder (``TMPDIR``),
over a runs folder of tiny runs this script trains first (a GAN, a completion network, a super-resolution
and a watermark run: seconds each), or over ``--runs-dir``. The clients send, in a fixed shuffled mix:
generate (with and without a latent walk), complete (latent search and the completion network), upscale
(small images and 300-500 pixel ones: 2-4 megapixel results), watermark embed / extract (and embeds in 800 x 600
photos), cancels (of queued and running jobs), bad requests (a truncated PNG, a text file,
too many pixels, a run of the wrong task, too many steps, a form without its Origin) and status reads. A
job request answered 429 (the queue is full) is sent again after the Retry-After it names.

    python benchmarks/web_soak.py                          # 500 requests, 20 clients, at most 2 minutes
    python benchmarks/web_soak.py --requests 60 --clients 8 --json soak.json

Prints: answers by status, 5xx answers (target 0), unexpected answers (target 0), tracebacks in the server's
log (target 0), the server's resident memory after the first 20 requests and at the end (target: within
1.3x), what its temporary folder holds at the end (target: nothing), requests per second. ``soak()`` returns
the same figures (tests/test_web.py runs a short one).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
from PIL import Image, ImageDraw

TASKS = ("gan", "inpaint", "superres", "watermark")  # the runs it needs, one of each
WARM = 20  # the first requests (every kind among them): the server's memory after them is the baseline
MIX = (  # (kind, weight): the requests' mix
    ("generate", 14),
    ("walk", 4),
    ("complete", 10),
    ("complete_net", 5),
    ("upscale", 10),
    ("upscale_big", 3),  # 300-500 pixels a side: a 2-4 megapixel result
    ("embed", 7),
    ("embed_big", 3),  # an 800 x 600 photo
    ("extract", 5),
    ("cancel", 10),
    ("truncated", 5),
    ("not_image", 4),
    ("too_many_pixels", 3),
    ("wrong_task", 5),
    ("too_many_steps", 3),
    ("no_origin", 3),
    ("status", 9),
)


# ---- the runs -------------------------------------------------------------------------------------------


def train_runs(root: Path) -> Path:
    """Tiny runs of :data:`TASKS` in ``root`` (one training step each, on 32 images)."""
    import ganforge
    from ganforge.tasks import get_task

    root.mkdir(parents=True, exist_ok=True)
    for task in TASKS:
        overrides = [
            f"task={task}",
            "data.limit=32",
            "train.batch_size=16",
            "train.progress=false",
            "train.tensorboard=false",
            "train.log_every=1",
            "train.sample_every=1000",
            "train.checkpoint_every=1000",
            "train.sample_count=8",
            "train.minutes=null",
            "train.steps=1",
            *get_task(task).tiny,
        ]
        run = ganforge.train(overrides=overrides, runs_dir=root / "trained")
        shutil.move(str(run), str(root / f"soak-{task}"))
    shutil.rmtree(root / "trained", ignore_errors=True)
    return root


# ---- what the clients send ------------------------------------------------------------------------------


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def digit_png(rng: random.Random, size: int = 28) -> bytes:
    im = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(im)
    pts = [(rng.randint(4, size - 4), rng.randint(4, size - 4)) for _ in range(3)]
    d.line(pts, fill=255, width=3)
    return png(np.asarray(im))


_HUGE: List[bytes] = []


def huge_png() -> bytes:
    """A 4100 x 4100 black PNG (17 KB): more pixels than the server's default limit of 16 megapixels."""
    if not _HUGE:
        _HUGE.append(png(np.zeros((4100, 4100), np.uint8)))
    return _HUGE[0]


def mask_png(size: int = 28) -> bytes:
    m = np.zeros((size, size), np.uint8)
    m[size // 3 : size // 2, size // 4 : 3 * size // 4] = 255
    return png(m)


class Soak:
    """The clients' shared state: the sequence of requests, what came back, the server's address."""

    def __init__(self, base: str, runs: Dict[str, str], n: int, seconds: float, seed: int = 0):
        self.base, self.runs, self.deadline = base, runs, time.time() + seconds
        rng = random.Random(seed)
        kinds = [k for k, w in MIX for _ in range(w)]
        first = [k for k, _ in MIX] + [rng.choice(kinds) for _ in range(WARM - len(MIX))]  # every kind once
        rng.shuffle(first)
        self.plan = (first + [rng.choice(kinds) for _ in range(n)])[:n]
        self.warm_left = min(WARM, n)  # the first WARM requests not yet answered: memory is measured after them
        self.next = 0
        self.lock = threading.Lock()
        self.codes: Counter = Counter()  # every HTTP answer's status
        self.kinds: Counter = Counter()  # requests done, by kind
        self.states: Counter = Counter()  # jobs' final states
        self.unexpected: List[str] = []
        self.http = 0
        self.retries = 0
        self.done = 0
        self.on_warm: Optional[Callable[[], None]] = None

    def take(self) -> Optional[tuple]:
        with self.lock:
            if self.next >= len(self.plan) or time.time() > self.deadline:
                return None
            self.next += 1
            return self.next - 1, self.plan[self.next - 1]

    def note(self, r) -> None:
        with self.lock:
            self.codes[r.status_code] += 1
            self.http += 1

    def bad(self, kind: str, what: str) -> None:
        with self.lock:
            self.unexpected.append(f"{kind}: {what}"[:300])

    def finished(self, index: int, kind: str) -> None:
        with self.lock:
            self.kinds[kind] += 1
            self.done += 1
            if index < WARM:
                self.warm_left -= 1
            warm_done = index < WARM and self.warm_left == 0
        if warm_done and self.on_warm is not None:
            self.on_warm()


def client(soak: Soak, index: int) -> None:
    import httpx

    rng = random.Random(1000 + index)
    with httpx.Client(base_url=soak.base, headers={"Origin": soak.base}, timeout=60) as c:
        while (taken := soak.take()) is not None:
            index, kind = taken
            try:
                one(soak, c, kind, rng)
            except Exception as e:  # a dropped connection, a timeout: the soak's failure, said
                soak.bad(kind, f"{type(e).__name__}: {e}")
            soak.finished(index, kind)


def submit(soak: Soak, c, page: str, data: Dict[str, Any], files: Optional[Dict[str, Any]] = None, **kw):
    """POST a page's form; a 429 (queue full) is sent again after its Retry-After, until the deadline."""
    while True:
        r = c.post(f"/api/pages/{page}", data=data, files=files, **kw)
        soak.note(r)
        if r.status_code != 429 or time.time() > soak.deadline + 30:
            return r
        with soak.lock:
            soak.retries += 1
        time.sleep(min(0.5, float(r.headers.get("retry-after", "1")) / 4))


def wait(soak: Soak, c, job: str, kind: str) -> Dict[str, Any]:
    while True:
        r = c.get(f"/api/jobs/{job}")
        soak.note(r)
        if r.status_code != 200:
            soak.bad(kind, f"job {job}: {r.status_code} {r.text[:120]}")
            return {"state": "lost"}
        j = r.json()
        if j["state"] not in ("queued", "running"):
            with soak.lock:
                soak.states[j["state"]] += 1
            return j
        time.sleep(0.05)


def job_ok(soak: Soak, c, kind: str, r, fetch: bool = True) -> None:
    """A job request: accepted, done, its first output served."""
    if r.status_code != 200:
        soak.bad(kind, f"{r.status_code} {r.text[:160]}")
        return
    j = wait(soak, c, r.json()["job"], kind)
    if j["state"] != "done":
        soak.bad(kind, f"job {j['state']}: {j.get('error')}")
        return
    if fetch:
        url = next((o["url"] for o in j["outputs"] if o["url"]), None)
        if url:
            got = c.get(url)
            soak.note(got)
            if got.status_code != 200 or not got.content:
                soak.bad(kind, f"output {got.status_code}")


def refused(soak: Soak, kind: str, r, status: int, says: str) -> None:
    """A bad request: answered ``status`` with a one-line ``error:`` containing ``says``."""
    try:
        msg = r.json().get("error", "")
    except ValueError:
        msg = r.text
    if r.status_code != status or not msg.startswith("error: ") or "\n" in msg or says not in msg:
        soak.bad(kind, f"{r.status_code} {msg[:200]!r} (expected {status} with {says!r})")


def one(soak: Soak, c, kind: str, rng: random.Random) -> None:
    import httpx

    runs = soak.runs
    seed = str(rng.randint(0, 10_000))
    if kind in ("generate", "walk"):
        data = {"run": runs["gan"], "seed": seed, "count": str(rng.choice([4, 8, 16, 32])), "ema": "true"}
        if kind == "walk":
            data |= {"seed_b": str(int(seed) + 1), "frames": "4"}
        job_ok(soak, c, kind, submit(soak, c, "generate", data))
    elif kind in ("complete", "complete_net"):
        run = runs["gan"] if kind == "complete" else runs["inpaint"]
        data = {"run": run, "steps": "10", "restarts": "2", "seed": seed, "method": "auto", "blend": "poisson"}
        files = {"image": ("digit.png", digit_png(rng)), "mask": ("mask.png", mask_png())}
        job_ok(soak, c, kind, submit(soak, c, "complete", data, files))
    elif kind in ("upscale", "upscale_big"):
        h, w = (rng.randint(6, 24), rng.randint(6, 24)) if kind == "upscale" else (rng.randint(300, 500),) * 2
        img = png(np.random.RandomState(int(seed)).randint(0, 256, (h, w), dtype=np.uint8))
        r = submit(soak, c, "upscale", {"run": runs["superres"], "ema": "true"}, {"image": ("small.png", img)})
        job_ok(soak, c, kind, r)
    elif kind in ("embed", "extract", "embed_big"):
        size = (600, 800) if kind == "embed_big" else (32, 32)
        arr = np.random.RandomState(int(seed)).randint(0, 256, size, dtype=np.uint8)
        action = "embed" if kind == "embed_big" else kind
        data = {"run": runs["watermark"], "action": action, "message": "g", "strength": "1"}
        job_ok(soak, c, kind, submit(soak, c, "watermark", data, {"image": ("photo.png", png(arr))}))
    elif kind == "cancel":  # a long latent search, cancelled while queued or while it runs
        data = {"run": runs["gan"], "steps": "400", "restarts": "8", "seed": seed}
        files = {"image": ("digit.png", digit_png(rng)), "mask": ("mask.png", mask_png())}
        r = submit(soak, c, "complete", data, files)
        if r.status_code != 200:
            soak.bad(kind, f"{r.status_code} {r.text[:160]}")
            return
        job = r.json()["job"]
        time.sleep(rng.choice([0, 0.05, 0.3]))
        r = c.post(f"/api/jobs/{job}/cancel")
        soak.note(r)
        if r.status_code != 200:
            soak.bad(kind, f"cancel: {r.status_code} {r.text[:160]}")
        j = wait(soak, c, job, kind)
        if j["state"] not in ("cancelled", "done"):
            soak.bad(kind, f"job {j['state']}: {j.get('error')}")
    elif kind == "truncated":
        whole = png(np.random.RandomState(int(seed)).randint(0, 256, (40, 40), dtype=np.uint8))
        data = {"run": runs["watermark"], "action": "extract"}
        r = submit(soak, c, "watermark", data, {"image": ("cut.png", whole[:-200])})
        refused(soak, kind, r, 400, "cannot read image 'cut.png'")
    elif kind == "not_image":
        r = submit(soak, c, "upscale", {"run": runs["superres"]}, {"image": ("notes.png", b"not an image at all")})
        refused(soak, kind, r, 400, "cannot read image 'notes.png'")
    elif kind == "too_many_pixels":
        r = submit(soak, c, "upscale", {"run": runs["superres"]}, {"image": ("huge.png", huge_png())})
        refused(soak, kind, r, 400, "pixels")
    elif kind == "wrong_task":
        page, task = rng.choice(
            [("generate", "watermark"), ("video", "gan"), ("upscale", "gan"), ("watermark", "superres")]
        )
        files = {"image": ("d.png", digit_png(rng))} if page in ("upscale", "watermark") else None
        r = submit(soak, c, page, {"run": runs[task], "count": "2"}, files)
        refused(soak, kind, r, 400, f"is a {task} run")
    elif kind == "too_many_steps":
        files = {"image": ("digit.png", digit_png(rng)), "mask": ("mask.png", mask_png())}
        r = submit(soak, c, "complete", {"run": runs["gan"], "steps": "100000"}, files)
        refused(soak, kind, r, 400, "latent steps 100000")
    elif kind == "no_origin":  # as a script would send it, without the client's Origin header
        r = httpx.post(soak.base + "/api/pages/generate", data={"run": runs["gan"]}, timeout=60)
        soak.note(r)
        refused(soak, kind, r, 403, "Origin")
    elif kind == "status":
        r = c.get("/api/status")
        soak.note(r)
        if r.status_code != 200:
            soak.bad(kind, f"{r.status_code}")
    else:
        raise ValueError(kind)


# ---- the server -----------------------------------------------------------------------------------------


def rss(pid: int) -> int:
    """A process's resident memory in bytes (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def soak(
    runs_dir: Optional[Path] = None,
    requests: int = 500,
    clients: int = 20,
    seconds: float = 120,
    env: Optional[Dict[str, str]] = None,
    log: Optional[Path] = None,
) -> Dict[str, Any]:
    """Run the soak and return its figures (see the module's docstring)."""
    import httpx

    work = Path(tempfile.mkdtemp(prefix="ganforge-soak-"))
    try:
        if runs_dir is None:
            t = time.time()
            runs_dir = train_runs(work / "runs")
            print(f"trained {len(TASKS)} tiny runs in {time.time() - t:.1f} s", file=sys.stderr)
        tmp = work / "tmp"
        tmp.mkdir()
        log = log or work / "server.log"
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server_env = os.environ | {"TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"} | (env or {})
        cmd = [sys.executable, "-m", "ganforge", "serve", "--runs-dir", str(runs_dir), "--port", str(port)]
        with open(log, "w") as logf:
            proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=server_env)
            try:
                return _drive(proc, base, requests, clients, seconds, tmp, log, httpx)
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _drive(proc, base, requests, clients, seconds, tmp: Path, log: Path, httpx) -> Dict:
    for _ in range(600):  # the server starts (torch's import takes seconds)
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(base + "/api/pages", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    else:
        raise RuntimeError("the server did not start")
    listed = httpx.get(base + "/api/runs").json()["runs"]
    runs = {}
    for task in TASKS:
        names = [r["name"] for r in listed if r.get("task") == task and not r.get("error")]
        if not names:
            raise RuntimeError(f"no {task} run in the runs folder")
        runs[task] = names[0]
    s = Soak(base, runs, requests, seconds)
    start_rss = rss(proc.pid)
    marks: Dict[str, int] = {}

    def on_warm() -> None:
        marks["baseline"] = rss(proc.pid)

    s.on_warm = on_warm
    t0 = time.time()
    threads = [threading.Thread(target=client, args=(s, i), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 120)
    elapsed = time.time() - t0
    status = {}
    for _ in range(600):  # the queue drains (cancelled or finished jobs remove their scratch folders)
        status = httpx.get(base + "/api/status", headers={"Origin": base}).json()
        if status["jobs"]["queued"] == 0 and status["jobs"]["running"] == 0:
            break
        time.sleep(0.1)
    end_rss = rss(proc.pid)
    left = sorted(p.name for p in tmp.iterdir())
    text = log.read_text(errors="replace")
    return {
        "requests": s.done,
        "planned": requests,
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests_per_s": round(s.done / elapsed, 2),
        "http_requests": s.http,
        "http_per_s": round(s.http / elapsed, 1),
        "by_kind": dict(sorted(s.kinds.items())),
        "status_codes": {str(k): v for k, v in sorted(s.codes.items())},
        "server_errors_5xx": sum(v for k, v in s.codes.items() if k >= 500),
        "retries_429": s.retries,
        "job_states": dict(s.states),
        "unexpected": s.unexpected,
        "tracebacks": text.count("Traceback (most recent call last)"),
        "rss_start_mb": round(start_rss / 2**20, 1),
        "rss_baseline_mb": round(marks.get("baseline", start_rss) / 2**20, 1),
        "rss_end_mb": round(end_rss / 2**20, 1),
        "rss_ratio": round(end_rss / marks.get("baseline", start_rss), 3),
        "temp_left": left,
        "server_status": status,
        "log_tail": text[-3000:] if text.count("Traceback") else "",
    }


def report(f: Dict[str, Any]) -> str:
    lines = [
        f"requests           {f['requests']} of {f['planned']} from {f['clients']} clients in {f['seconds']} s: "
        f"{f['requests_per_s']} requests/s ({f['http_requests']} HTTP requests, {f['http_per_s']}/s)",
        f"by kind            {f['by_kind']}",
        f"HTTP statuses      {f['status_codes']} ({f['retries_429']} job requests sent again after a 429)",
        f"job states         {f['job_states']}",
        f"5xx answers        {f['server_errors_5xx']}  (target 0)",
        f"unexpected answers {len(f['unexpected'])}  (target 0)" + "".join(f"\n    {u}" for u in f["unexpected"][:10]),
        f"tracebacks in log  {f['tracebacks']}  (target 0)",
        f"resident memory    {f['rss_start_mb']} MB at start, {f['rss_baseline_mb']} MB after the first 20 requests, "
        f"{f['rss_end_mb']} MB at the end: x{f['rss_ratio']}  (target <= 1.3)",
        f"temp folder left   {len(f['temp_left'])} entries {f['temp_left'][:5]}  (target 0)",
        f"server status      {f['server_status'].get('jobs')}",
    ]
    if f["log_tail"]:
        lines.append("server log (end):\n" + f["log_tail"])
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=120, help="stop sending new requests after this (default 120)")
    ap.add_argument("--runs-dir", type=Path, default=None, help="serve these runs (default: train tiny ones)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    figures = soak(args.runs_dir, args.requests, args.clients, args.seconds)
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    ok = (
        figures["server_errors_5xx"] == 0
        and not figures["unexpected"]
        and figures["tracebacks"] == 0
        and figures["rss_ratio"] <= 1.3
        and not figures["temp_left"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
