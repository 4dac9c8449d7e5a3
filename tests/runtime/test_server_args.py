import pytest

from sglang_nb.runtime.server_args import ServerArgs, prepare_server_args


def test_sglang_flag_names_and_v03_aliases():
    args = prepare_server_args(["--model-path", "m", "--tp", "1", "--dp", "1", "--nccl-init-addr", "h:1",
                                "--enable-overlap-scheduler", "--stream-output", "--chunked-prefill-size", "-1",
                                "--schedule-policy", "fcfs", "--mem-fraction-static", "0.5"])
    assert args.model_path == "m" and args.tokenizer_path == "m"
    assert args.dist_init_addr == "h:1" and args.enable_overlap_schedule
    assert args.incremental_streaming_output and args.chunked_prefill_size == -1
    assert args.schedule_policy == "fcfs" and args.mem_fraction_static == 0.5
    assert prepare_server_args(["--nccl-init", "x:2"]).dist_init_addr == "x:2"
    assert prepare_server_args(["--model", "z"]).model_path == "z"


def test_unknown_and_bad_choices_fail_at_parse():
    with pytest.raises(SystemExit):
        prepare_server_args(["--no-such-flag"])
    with pytest.raises(SystemExit):
        prepare_server_args(["--dtype", "int3"])


@pytest.mark.parametrize("kwargs, flag", [
    ({"mem_fraction_static": 1.5}, "--mem-fraction-static"),
    ({"max_running_requests": 0}, "--max-running-requests"),
    ({"tp_size": 0}, "--tp-size"),
    ({"port": 70000}, "--port"),
    ({"chunked_prefill_size": 0}, "--chunked-prefill-size"),
    ({"json_model_override_args": "{bad"}, "--json-model-override-args"),
    ({"device": "cpu", "attention_backend": "triton"}, "--attention-backend"),
])
def test_contradictory_values_name_the_flag(kwargs, flag):
    with pytest.raises(ValueError, match=flag):
        ServerArgs(**kwargs).check()


def test_unknown_kwarg_is_a_clear_value_error():
    with pytest.raises(ValueError, match="no_such_option"):
        ServerArgs.from_kwargs(no_such_option=1)


def test_radix_disabled_turns_lpm_into_fcfs():
    assert ServerArgs(disable_radix_cache=True).schedule_policy_effective() == "fcfs"
    assert ServerArgs().schedule_policy_effective() == "lpm"
