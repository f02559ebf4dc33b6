"""While a run's log is open, library warnings, Python warnings and transformers' progress bars stay off the
terminal: the warnings go to the run's log.txt, the bars are off; everything is as before afterwards."""

import logging
import warnings

from transformers.utils import logging as hf_logging

from agent_forge.pipeline.logfile import run_log


def test_library_noise_goes_to_the_log_file_not_the_terminal(tmp_path, capfd):
    log_file = tmp_path / "log.txt"
    hf_logger = hf_logging.get_logger("transformers.modeling_utils")
    handlers_before = logging.getLogger("transformers").handlers[:]
    bars_before = hf_logging.is_progress_bar_enabled()
    showwarning_before = warnings.showwarning
    with run_log(log_file):
        hf_logger.warning("You don't have a GPU available to load the model")
        warnings.warn("`is_gradient_checkpointing` is deprecated", FutureWarning)
        logging.getLogger("agent_forge.test").info("a stage line")
        assert not hf_logging.is_progress_bar_enabled()
        for _ in hf_logging.tqdm(range(3), desc="Loading weights"):
            pass
        hf_logger.error("a real error still reaches the terminal")
    captured = capfd.readouterr()
    assert "GPU" not in captured.err and "is_gradient_checkpointing" not in captured.err
    assert "Loading weights" not in captured.err
    assert "a real error still reaches the terminal" in captured.err
    text = log_file.read_text()
    assert "WARNING transformers.modeling_utils: You don't have a GPU available" in text
    assert "FutureWarning: `is_gradient_checkpointing` is deprecated" in text
    assert "a stage line" in text
    # restored: transformers' own handler is back, the bars are as they were, warnings are not captured
    assert logging.getLogger("transformers").handlers == handlers_before
    assert hf_logging.is_progress_bar_enabled() == bars_before
    assert warnings.showwarning is showwarning_before
