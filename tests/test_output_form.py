"""An artifact's outputs read in their form: the PyTorch logits are compared as probabilities where the file ends in
a Softmax, as log-probabilities where it ends in a log_softmax. Known answers by hand."""

from __future__ import annotations

import numpy as np
import pytest

from edgebench.measure.output_form import reference_in_output_form

#: two images' logits; softmax of [0, ln 3] is [1/4, 3/4], of [ln 2, ln 2] is [1/2, 1/2]
LOGITS = np.array([[0.0, np.log(3.0)], [np.log(2.0), np.log(2.0)]])


def test_probabilities_are_compared_with_the_logits_softmax():
    outputs = np.array([[0.25, 0.75], [0.5, 0.5]], np.float32)
    reference, form = reference_in_output_form(outputs, LOGITS)
    assert form == "probabilities"
    np.testing.assert_allclose(reference, [[0.25, 0.75], [0.5, 0.5]], atol=1e-12)


def test_log_probabilities_are_compared_with_the_logits_log_softmax():
    outputs = np.log(np.array([[0.25, 0.75], [0.5, 0.5]], np.float32))
    reference, form = reference_in_output_form(outputs, LOGITS)
    assert form == "log-probabilities"
    np.testing.assert_allclose(reference, np.log([[0.25, 0.75], [0.5, 0.5]]), atol=1e-12)
    # large logits: log-softmax without exp underflow (exp(-1000) is 0 in float64)
    reference, _ = reference_in_output_form(np.array([[0.0, -1000.0]]), np.array([[1000.0, 0.0]]))
    np.testing.assert_allclose(reference, [[0.0, -1000.0]])


@pytest.mark.parametrize("outputs", [
    LOGITS + 0.5,                                    # logits: compared as they are
    np.array([[0.25, 0.75], [0.3, 0.3]]),            # a row that does not sum to 1 is no distribution
    np.array([[-0.25, 1.25], [0.5, 0.5]]),           # nor one with a negative entry
])
def test_other_outputs_are_compared_as_logits(outputs):
    reference, form = reference_in_output_form(outputs, LOGITS)
    assert form == "logits" and np.array_equal(reference, LOGITS)


def test_a_model_that_itself_ends_in_a_softmax_is_compared_as_it_is():
    """The PyTorch model's own outputs are probabilities too: nothing to convert."""
    probabilities = np.array([[0.25, 0.75], [0.5, 0.5]])
    reference, form = reference_in_output_form(probabilities + 1e-6, probabilities)
    assert form == "logits" and np.array_equal(reference, probabilities)
