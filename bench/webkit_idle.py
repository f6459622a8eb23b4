"""Idle CPU of a bare WebKitGTK view, to tell WebKit's own cost from the app's (issue 10).

    /usr/bin/python3 bench/webkit_idle.py [PAGE] [--env NAME=VALUE]... [--settle S] [--seconds S]

PAGE is a URL (http://..., file://...) or an HTML file; without one, a page whose only content
is a focused text area. The view runs in its own Xvfb screen (1280x800, the app's default
size) with nothing but WebKitGTK around it: no Tauri, no wry, no tao. After --settle seconds
(default 12) it reads /proc for the view's process and its WebKit helpers over --seconds
(default 10) and prints CPU ticks per process and the busiest threads, as one JSON object.
`bench/desktop.sh` measures the app the same way; comparing the two says whether a cost is
WebKit's or the shell's. Needs the system Python with PyGObject and WebKit's introspection data
(Debian: python3-gi, gir1.2-webkit2-4.1) and Xvfb.

Measured with it (WebKitGTK 2.50.6, Debian 12, no GPU, 2 cores; ticks are 1/100 s):
- a focused text area: 50-57 ticks per 10 s, about 41 of them in the web process's llvmpipe
  threads (accelerated compositing through Mesa's software GL); with
  --env WEBKIT_DISABLE_COMPOSITING_MODE=1 or --env WEBKIT_DISABLE_DMABUF_RENDERER=1: 7-9;
- the app's own UI (served by `cortex serve --ui-dir ui/dist`), composer focused: 54 against 11.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

DEFAULT_PAGE = (
    "<!doctype html><html><body style='margin:0;font:15px sans-serif'>"
    "<div style='padding:40px'><textarea id=t rows=2 cols=60></textarea></div>"
    "<script>document.getElementById('t').focus()</script></body></html>"
)


def child(page: str) -> None:
    import gi

    gi.require_version("Gtk", "3.0")
    gi.require_version("WebKit2", "4.1")
    from gi.repository import Gtk, WebKit2

    win = Gtk.Window()
    win.set_default_size(1280, 800)
    view = WebKit2.WebView()
    win.add(view)
    if page.startswith(("http://", "https://", "file://")):
        view.load_uri(page)
    else:
        html = DEFAULT_PAGE if not page else open(page, encoding="utf-8").read()
        view.load_html(html, "file:///")
    win.connect("destroy", Gtk.main_quit)
    win.show_all()
    win.present()
    Gtk.main()


def family(pid: int) -> list[int]:
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def thread_ticks(pid: int) -> dict[tuple[int, str, str], int]:
    """(tid, process name, thread name) -> user + system ticks so far."""
    ticks = {}
    try:
        with open(f"/proc/{pid}/comm") as f:
            pname = f.read().strip()
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                tname = f.read().strip()
            fields = stat[stat.rindex(")") + 2 :].split()
            ticks[(int(tid), pname, tname)] = int(fields[11]) + int(fields[12])
    except OSError:
        pass  # the process or thread ended meanwhile
    return ticks


def snapshot(pid: int) -> dict[tuple[int, str, str], int]:
    ticks = {}
    for p in family(pid):
        ticks.update(thread_ticks(p))
    return ticks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("page", nargs="?", default="")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--settle", type=float, default=12.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.page)
        return

    env = dict(os.environ)
    for kv in args.env:
        name, _, value = kv.partition("=")
        env[name] = value
    with tempfile.TemporaryDirectory() as work:
        display_file = os.path.join(work, "display")
        with open(display_file, "w") as fd3:
            xvfb = subprocess.Popen(
                ["Xvfb", "-displayfd", str(fd3.fileno()), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                pass_fds=[fd3.fileno()],
                stderr=subprocess.DEVNULL,
            )
        try:
            for _ in range(100):
                display = open(display_file).read().strip()
                if display:
                    break
                time.sleep(0.1)
            else:
                sys.exit("Xvfb did not start")
            env["DISPLAY"] = f":{display}"
            env.pop("WAYLAND_DISPLAY", None)
            view = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--child", args.page],
                env=env,
                stderr=subprocess.DEVNULL,
            )
            try:
                time.sleep(args.settle)
                before = snapshot(view.pid)
                time.sleep(args.seconds)
                after = snapshot(view.pid)
            finally:
                view.terminate()
                view.wait(timeout=10)
        finally:
            xvfb.terminate()
            xvfb.wait(timeout=10)

    used = {key: after[key] - before.get(key, 0) for key in after}
    per_process: dict[str, int] = {}
    for (_, pname, _), t in used.items():
        per_process[pname] = per_process.get(pname, 0) + t
    busiest = sorted(((t, f"{p}/{n}") for (_, p, n), t in used.items() if t > 0), reverse=True)[:8]
    hz = os.sysconf("SC_CLK_TCK")
    total = sum(used.values())
    print(
        json.dumps(
            {
                "page": args.page or "(a focused text area)",
                "env": args.env,
                "seconds": args.seconds,
                "ticks": total,
                "percent_of_one_core": round(100 * total / hz / args.seconds, 2),
                "per_process": per_process,
                "busiest_threads": [{"thread": name, "ticks": t} for t, name in busiest],
            }
        )
    )


if __name__ == "__main__":
    main()
