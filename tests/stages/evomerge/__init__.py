"""Tests of stage 1.1 (EvoMerge); a package so that test module names cannot clash with other stages'."""
