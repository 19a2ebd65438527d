"""The core and the CLI import no ML framework; `--help` stays fast because of it."""

import subprocess
import sys
import textwrap

BLOCKED = ["tensorflow", "keras", "onnxruntime", "ai_edge_litert", "onnx", "torch", "openvino"]

BLOCKER = textwrap.dedent(
    f"""
    import sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in {BLOCKED!r}:
                raise ImportError('blocked for this test: ' + name)
    sys.meta_path.insert(0, Block())
    """
)


def test_core_and_cli_import_with_frameworks_unimportable():
    code = BLOCKER + textwrap.dedent(
        """
        import xpubench.core, xpubench.core.measure, xpubench.core.stats, xpubench.core.cell, xpubench.cli
        import xpubench.backends, xpubench.backends.base, xpubench.store, xpubench.sweep
        for name in ('tensorflow', 'onnxruntime'):
            try:
                __import__(name)
            except ImportError:
                pass
            else:
                raise SystemExit('blocker failed for ' + name)
        print('ok')
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_help_runs_with_frameworks_unimportable():
    code = BLOCKER + "from xpubench.cli import main\nraise SystemExit(main(['--help']))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "run" in out.stdout and "devices" in out.stdout


def test_help_imports_no_heavy_module():
    heavy = ("numpy", "scipy", "sklearn", *BLOCKED)
    code = textwrap.dedent(
        f"""
        import sys
        from xpubench.cli import main
        try:
            main(['--help'])
        except SystemExit:
            pass
        print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
