from pathlib import Path

import pytest

import greybox.rules as gr

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def credit():
    return gr.load(EXAMPLES / "credit.rules")


@pytest.fixture
def addition():
    return gr.load(EXAMPLES / "addition.rules")
