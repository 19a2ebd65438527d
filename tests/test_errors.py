"""A runtime's failure kept in one line: the sentence that explains it, not where it was raised."""

import pytest

from xpubench.errors import REASON_CHARS, one_line


def test_openvino_failure_keeps_its_explanation(tmp_path):
    pytest.importorskip("openvino")
    import openvino as ov

    garbage = tmp_path / "garbage.xml"
    garbage.write_text("not a model\n")
    with pytest.raises(RuntimeError) as caught:
        ov.Core().read_model(str(garbage))
    assert str(caught.value).startswith("Exception from src/")  # the runtime's own form: locations first
    reason = one_line(caught.value)
    assert reason.startswith("RuntimeError: Unable to read the model"), reason
    assert "core.cpp" not in reason and "\n" not in reason


def test_openvino_bad_config_says_which_value():
    pytest.importorskip("openvino")
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops

    x = ops.parameter([1, 3], np.float32)
    model = ov.Model([ops.relu(x)], [x])
    with pytest.raises(RuntimeError) as caught:
        ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "bogus"})
    reason = one_line(caught.value)
    assert "Wrong value bogus for property key INFERENCE_PRECISION_HINT" in reason, reason
    assert ".cpp" not in reason


def test_python_traceback_frames_and_separators_are_dropped():
    message = (
        "Graph execution error:\n\n"
        "Detected at node dense/MatMul defined at (most recent call last):\n"
        '  File "/app/train.py", line 12, in <module>\n'
        "    model.predict(x)\n"
        "----------\n"
        "Matrix size-incompatible: In[0]: [1,16], In[1]: [8,6]\n"
    )
    assert one_line(ValueError(message)) == (
        "ValueError: Graph execution error: Matrix size-incompatible: In[0]: [1,16], In[1]: [8,6]"
    )


def test_one_line_is_bounded_and_never_empty():
    long = one_line(RuntimeError("x" * 1000 + "\nmore"))
    assert len(long) == REASON_CHARS and long.endswith("…")
    assert one_line(RuntimeError("")) == "RuntimeError"
    assert one_line(KeyError("only/this.cpp:12")) == "KeyError: 'only/this.cpp:12'"
    assert one_line(RuntimeError("Exception from a/b.cpp:3:\n\n")) == "RuntimeError: Exception from a/b.cpp:3"


def test_cell_and_worker_reasons_use_the_same_rule():
    from xpubench.run import cell_runner, worker

    assert cell_runner.one_line is one_line and worker.one_line is one_line
    error = RuntimeError("Exception from src/x.cpp:1:\nthe real reason\n")
    assert cell_runner.one_line(error) == "RuntimeError: the real reason"
