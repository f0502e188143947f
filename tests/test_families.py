"""Families (rules/families/*.yaml): each compiles into rules whose examples pass; broken files fail with file:line."""
from __future__ import annotations

import shutil
import textwrap

import pytest

from audit_agent.evaluate import evaluate
from audit_agent.i18n import load_rule_texts
from audit_agent.model import ProcessInfo, Snapshot
from audit_agent.rules.compiler import CompiledRules
from audit_agent.rules.examples import check_examples
from audit_agent.rules.family_match import config_facts
from audit_agent.rules.loader import default_rules_dir, load_pack
from audit_agent.yamlfile import ConfigError

REQUIRED = {"CHIA", "FILECOIN", "SPACEMESH", "SUBSPACE", "STORJ", "SWARM", "ARWEAVE", "SIA", "QUBIC", "ALEO", "DYNEX",
            "XELIS", "IRONFISH", "TARI", "SALVIUM", "ZANO", "NEXA", "KARLSEN", "PYRIN", "SPECTRE", "DERO", "ZEPHYR",
            "VERUS", "ALEPHIUM", "NEURAI", "KASPA", "IONET", "GOLEM", "NOSANA"}

MINIMAL = """\
family:
  id: TOYCOIN
  name: {en: Toycoin, zh-CN: 玩具币}
  category: miner
  coin: TOY
  reference: https://example.invalid/toycoin
  software:
    names: [toyminer]
  ports: {listen: [4242]}
  examples:
    names: {match: [toyminer], no_match: [toy]}
    ports: {match: ["4242"], no_match: ["4243"]}
"""


def pack_with_family(tmp_path, text: str):
    root = tmp_path / "pack"
    shutil.copytree(default_rules_dir(), root, ignore=shutil.ignore_patterns("families"))
    (root / "families").mkdir()
    (root / "families" / "toy.yaml").write_text(textwrap.dedent(text))
    return root


def test_the_default_families_load_and_their_examples_pass():
    pack = load_pack()
    assert {f.id for f in pack.families} >= REQUIRED
    assert check_examples(pack) == []
    categories = {f.category for f in pack.families}
    assert categories == {"miner", "storage_farming", "resource_sharing"}
    storage = {f.id for f in pack.families if f.category == "storage_farming"}
    assert storage >= {"CHIA", "FILECOIN", "SPACEMESH", "SUBSPACE", "STORJ", "SWARM", "ARWEAVE", "SIA"}
    assert all(any(r.id.startswith(f"AA-{f.id}-") for r in pack.rules) for f in pack.families)
    assert any(name.startswith("families/") for name in pack.files)


def test_family_rules_have_texts_in_both_languages():
    ids = {r.id for r in load_pack().rules if r.kind.startswith("family_") or r.id.endswith(("-NAME", "-CMD"))}
    english, chinese = load_rule_texts("en"), load_rule_texts("zh-CN")
    for rule_id in ids:
        assert english[rule_id]["meaning"].endswith("."), rule_id
        assert "奇亚" in chinese["AA-CHIA-NAME"]["title"] or "Chia" in chinese["AA-CHIA-NAME"]["title"]
        assert chinese[rule_id]["meaning"].endswith("。") and chinese[rule_id]["meaning"] != english[rule_id]["meaning"]


def test_a_new_token_is_a_data_change(tmp_path):
    pack = load_pack(pack_with_family(tmp_path, MINIMAL))
    assert [r.id for r in pack.rules if r.id.startswith("AA-TOYCOIN")] == ["AA-TOYCOIN-NAME", "AA-TOYCOIN-PORT"]
    rules = CompiledRules(pack)
    assert rules.names["toyminer"].id == "AA-TOYCOIN-NAME"
    assert 4242 in rules.families.listen_ports
    report = evaluate(Snapshot(processes=[ProcessInfo(pid=7, name="toyminer", cmdline=["./toyminer"])]), rules, now=0)
    [finding] = report.findings
    assert finding.rule_ids == ["AA-TOYCOIN-NAME"] and finding.category == "miner"


@pytest.mark.parametrize("change, message", [
    (("id: TOYCOIN", "id: toy"), "toy.yaml:2: family id 'toy' must be"),
    (("category: miner", "category: farming"), "category must be one of"),
    (("  reference: https://example.invalid/toycoin\n", ""), "reference (a public source) is required"),
    (("    names: {match: [toyminer], no_match: [toy]}\n", ""), "examples.names needs match and no_match"),
    (("{listen: [4242]}", "{listen: [70000]}"), "70000 is not a port number"),
    (("names: [toyminer]", "cmdline: ['(unclosed']"), "bad regex"),
    (("  examples:", "  artefacts: [{kind: plot, name: 'x.plot'}]\n  examples:"), "needs min_size"),
    (("  examples:", "  configs: [{paths: [relative.json], format: json, identify: [a]}]\n  examples:"),
     "must start with /, ~"),
    (("  examples:", "  surprise: 1\n  examples:"), "unknown family key(s): surprise"),
])
def test_a_broken_family_fails_with_file_and_line(tmp_path, change, message):
    with pytest.raises(ConfigError, match="toy.yaml:") as failure:
        load_pack(pack_with_family(tmp_path, MINIMAL.replace(*change)))
    assert message in str(failure.value)


def test_a_failing_family_example_is_reported(tmp_path):
    pack = load_pack(pack_with_family(tmp_path, MINIMAL.replace("no_match: [toy]", "no_match: [toyminer]")))
    problems = check_examples(pack)
    assert len(problems) == 1 and "AA-TOYCOIN-NAME" in problems[0] and "toy.yaml" in problems[0]


def test_duplicate_family_ids_are_refused(tmp_path):
    root = pack_with_family(tmp_path, MINIMAL)
    (root / "families" / "toy2.yaml").write_text(textwrap.dedent(MINIMAL))
    with pytest.raises(ConfigError, match="duplicate family id TOYCOIN"):
        load_pack(root)


def test_rules_list_shows_the_families(agent):
    result = agent("rules", "list")
    assert result.returncode == 0, result.stderr
    assert "families (rules/families/*.yaml)" in result.stdout
    line = next(line for line in result.stdout.splitlines() if line.startswith("CHIA "))
    assert "storage_farming" in line and "artefacts" in line and "configs" in line
    assert any(line.startswith("IONET ") and "resource_sharing" in line for line in result.stdout.splitlines())


def test_config_facts_keep_logins_and_dirs_but_never_tokens():
    pack = load_pack()
    qubic = next(f for f in pack.families if f.id == "QUBIC").configs[0]
    facts = config_facts(qubic, '{"ClientSettings": {"accessToken": "eyJhbGciOiJIUzUxMiJ9.secret.sig", '
                                '"amountOfThreads": 8, "alias": "rig7", "poolAddress": "wss://wps.qubic.li/ws"}}')
    assert facts is not None and "accesstoken" in facts.keys
    assert "rig7" in facts.logins and "wss://wps.qubic.li/ws" in facts.urls
    assert not any("eyJ" in value for value in facts.logins + facts.urls + facts.dirs)
    chia = next(f for f in pack.families if f.id == "CHIA").configs[0]
    facts = config_facts(chia, "selected_network: testnet11\nfarmer:\n  xch_target_address: txch1q\n"
                               "harvester:\n  plot_directories: [/mnt/a, /mnt/b]\n")
    assert facts is not None and facts.dirs == ["/mnt/a", "/mnt/b"] and facts.network == "testnet11"
    assert config_facts(chia, "{{{{ not yaml") is None
    assert config_facts(chia, "- a list\n- not a mapping\n") is None


# ------------------------------------------------------------------ wallets, titles, GPU farming

QUBIC_ID = "BZBQFLLBNCXEMGLOBHUVFTLUPLVCPQUASSILFABOFFBCADQSSUPNWLZBQEXK"


@pytest.mark.parametrize("argv, family", [
    # renamed binaries: nothing but the coin's own address format says what they mine
    (["./worker", "-t", "16", "-i", QUBIC_ID, "-l", "rig1"], "QUBIC"),
    (["/tmp/.cache/kworker", "--miner-address", "xel:qn8qqv7s3ruzel8dq9lp4shfxksapvq58cp2ul0cwpc2zpa6tansqqsc2ll",
      "--daemon-address", "10.0.0.9:8080"], "XELIS"),
    (["./svc", "--address", "aleo1h6836ay6gssml5urlkak92380uekqcdfdren04fhd44p5grmfcyq8n07hd", "--proxy", "10.1.1.1:9090"],
     "ALEO"),
    (["./solver", "-mining-address", "XwmfZnrGxfsDsg896z4CLfVzddQiYbMSTWcHoH2XT4c9RHRKHjon6QrAnS9QoSFL9BiQ5cShvnieSMwtMHik"
      "2gsF2zjgwL84Y", "-stratum-url", "10.2.2.2"], "DYNEX"),
])
def test_a_renamed_miner_is_named_by_its_wallet(argv, family):
    rules = CompiledRules(load_pack())
    process = ProcessInfo(pid=77, name=argv[0].rsplit("/", 1)[-1], exe="/opt/x/" + argv[0].rsplit("/", 1)[-1],
                          cmdline=argv, username="lab")
    [finding] = [f for f in evaluate(Snapshot(processes=[process]), rules, now=0.0).findings if f.subject.pid == 77]
    assert finding.severity.value in ("high", "critical")
    assert f"AA-{family}-WALLET" in finding.rule_ids
    assert finding.title.startswith(next(f.name for f in load_pack().families if f.id == family))


def test_a_wallet_format_does_not_reach_outside_a_login():
    rules = CompiledRules(load_pack())
    process = ProcessInfo(pid=78, name="grep", exe="/usr/bin/grep", cmdline=["grep", "-r", QUBIC_ID, "/srv/notes"])
    assert evaluate(Snapshot(processes=[process]), rules, now=0.0).findings == []


def test_a_finding_is_titled_by_what_was_found_not_by_the_pool_rule():
    """The Qubic client's config names its pool (qubic.li, also a generic pool-list domain): the finding says
    Qubic, whichever rule happened to be surest."""
    from audit_agent.model import ConfigReader, FamilyConfig
    rules = CompiledRules(load_pack())
    process = ProcessInfo(pid=79, name="python3", exe="/usr/bin/python3.11", cmdline=["python3"], cwd="/opt/q")
    config = FamilyConfig(path="/opt/q/appsettings.json", family="QUBIC", owner="lab",
                          keys=["accesstoken", "amountofthreads", "pooladdress"], urls=["wss://wps.qubic.li/ws"],
                          readers=[ConfigReader(pid=79, via="cwd")])
    [finding] = evaluate(Snapshot(processes=[process], family_configs=[config]), rules, now=0.0).findings
    assert finding.title.startswith("Qubic") and finding.rule_ids[0].startswith("AA-QUBIC-")
    assert "AA-POOL-001" in finding.rule_ids                          # the pool is still evidence


@pytest.mark.parametrize("argv", [
    ["./bladebit_cuda", "-n", "1", "-f", "8d0c5e58" * 12, "-c", "xch1m3x4er3nkjtxgtlyq9r3nl0vcyt3mmdgute6w42sm3vuwqvn0yxq8dc8vy",
     "cudaplot", "/mnt/plots"],
    ["chia_harvester"],                                   # Gigahorse's GPU harvester keeps the service title
])
def test_a_chia_process_on_the_gpu_says_the_gpu_farms(argv, mocker):
    """The GPU collector's view (NVML, mocked: this machine has no GPU) lists the process with its memory;
    the Chia finding carries the GPU as evidence, busy or between two signage points."""
    from audit_agent.collect.gpu import GpuSampler
    from audit_agent.i18n import Translator, load_messages
    from audit_agent.render.story import story
    nvml = mocker.MagicMock()
    nvml.nvmlDeviceGetCount.return_value = 1
    nvml.nvmlDeviceGetName.return_value = b"NVIDIA A100-SXM4-80GB"
    nvml.nvmlDeviceGetUUID.return_value = "GPU-1"
    nvml.nvmlSystemGetDriverVersion.return_value = b"550.54.15"
    nvml.nvmlDeviceGetMemoryInfo.return_value = mocker.Mock(total=80 << 30, used=9 << 30)
    nvml.nvmlDeviceGetUtilizationRates.return_value = mocker.Mock(gpu=3, memory=0)      # idle between proofs
    nvml.nvmlDeviceGetComputeRunningProcesses.return_value = [mocker.Mock(pid=4321, usedGpuMemory=8 << 30)]
    nvml.nvmlDeviceGetGraphicsRunningProcesses.return_value = []
    sampler = GpuSampler(nvml_loader=lambda: nvml)
    sampler.start()
    sampler.sample()
    devices, _ = sampler.finish()
    farmer = ProcessInfo(pid=4321, name=argv[0].rsplit("/", 1)[-1], exe="/opt/chia/" + argv[0].rsplit("/", 1)[-1],
                         cmdline=argv, username="lab")
    [finding] = evaluate(Snapshot(processes=[farmer], gpus=devices), CompiledRules(load_pack()), now=0.0).findings
    assert finding.title.startswith("Chia") and "AA-GPU-003" in finding.rule_ids and "AA-GPU-001" not in finding.rule_ids
    assert finding.subject.gpu_index == 0
    [gpu] = [e for e in finding.evidence if e.rule_id == "AA-GPU-003"]
    assert gpu.facts["memory_mib"] == 8192 and gpu.facts["family"] == "Chia"
    for lang in ("en", "zh-CN"):
        told = story(finding, Translator(lang, load_messages(lang)))
        [row] = [r for r in told.rows if r.rule_id == "AA-GPU-003"]
        assert "8192" in row.shown.text and ("Chia" in row.shown.text) and row.meaning


def test_a_training_job_on_the_gpu_is_not_farming():
    from tests.factories import gpu
    trainer = ProcessInfo(pid=55, name="python3", exe="/usr/bin/python3", username="lab",
                          cmdline=["python3", "-m", "torch.distributed.run", "train.py"])
    report = evaluate(Snapshot(processes=[trainer], gpus=[gpu(0, 99.0, [55])]), CompiledRules(load_pack()), now=0.0)
    assert not any("AA-GPU-003" in f.rule_ids for f in report.findings)
