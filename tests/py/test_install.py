#!/usr/bin/env python3
"""`cmake --install` puts libtinyllm, tinyllm.h, the CLI and tinyllm.pc under a prefix, and a program
built only from those (examples/simple.c via pkg-config) links and produces the same greedy tokens as
`tinyllm generate`."""
import os, subprocess, sys, tempfile

build = os.path.dirname(os.path.abspath(os.environ.get("TL_BIN", "build/tinyllm")))
model = os.path.abspath("tests/data/hf/qwen2-tied-gqa2-hd64")
failed = 0
with tempfile.TemporaryDirectory() as prefix:
    subprocess.run(["cmake", "--install", build, "--prefix", prefix], check=True, capture_output=True)
    libdir = next(os.path.join(prefix, d) for d in ("lib", "lib64", "lib/x86_64-linux-gnu")
                  if os.path.exists(os.path.join(prefix, d, "pkgconfig", "tinyllm.pc")))
    for f in ("include/tinyllm.h", "bin/tinyllm"):
        if not os.path.exists(os.path.join(prefix, f)):
            print("FAIL: missing", f); failed += 1
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(libdir, "pkgconfig"))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "tinyllm"], env=env, capture_output=True,
                           text=True, check=True).stdout.split()
    exe = os.path.join(prefix, "simple")
    # the sanitizer build's library needs its sanitizer runtimes (clang's) in the program too
    cc = ["clang", "-fsanitize=address,undefined"] if os.environ.get("TL_SANITIZE") == "1" else ["cc"]
    subprocess.run([*cc, "examples/simple.c", *flags, "-o", exe, f"-Wl,-rpath,{libdir}"], check=True)
    out = subprocess.run([exe, model], capture_output=True, text=True, timeout=60)
    ref = subprocess.run([os.path.join(prefix, "bin", "tinyllm"), "generate", "-m", model, "--tokens", "5,6,7",
                          "-n", "8", "--backend", "cpu"], capture_output=True, text=True, timeout=60)
    got, want = out.stdout.split("\n")[0].split(), ref.stdout.split()
    if out.returncode != 0 or got != want or len(got) != 8:
        print("FAIL: example output", out.stdout, out.stderr, "vs", ref.stdout); failed += 1
print(f"{4 - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
