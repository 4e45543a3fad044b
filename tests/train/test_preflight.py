"""Set-up refusals that must come before anything is built."""

import pytest

from mbridge_config import CommOverlapConfig, ConfigError
from mbridge_train.preflight import refuse_tp_comm_overlap


def test_tp_comm_overlap_is_refused_with_the_field_named():
    with pytest.raises(ConfigError, match="userbuffers") as error:
        refuse_tp_comm_overlap(CommOverlapConfig(tp_comm_overlap=True))
    assert error.value.fields == ["comm_overlap.tp_comm_overlap"]
    refuse_tp_comm_overlap(CommOverlapConfig(overlap_grad_reduce=True))
    refuse_tp_comm_overlap(None)
