/*
   audit-agent default YARA rules: the same indicators as rules/binaries.yaml,
   for hosts where yara-python is installed. Sources: Neo23x0/signature-base
   (pua_xmrig_monero_miner.yar, pua_cryptocoin_miner.yar, crime_h2miner_kinsing.yar),
   elastic/protections-artifacts (Multi_Cryptominer_Xmrig.yar), chainguard-dev/malcontent
   (lolminer.yara), osquery-defense-kit (3-yara-unexpected-miner-process.sql).
   Every rule needs several distinct strings: single generic words (randomx, ethash,
   kawpow) also occur in blockchain nodes and libraries.
*/

rule AA_BIN_001_XMRig_Family
{
    meta:
        id = "AA-BIN-001"
        description = "xmrig or an xmrig fork (renamed or not)"
        severity = "critical"
        reference = "https://github.com/Neo23x0/signature-base/blob/master/yara/pua_xmrig_monero_miner.yar"
    strings:
        $s1 = "XMRig/%s" ascii
        $s2 = "donate.v2.xmrig.com" ascii
        $s3 = "donate.ssl.xmrig.com" ascii
        $s4 = "no valid configuration found, try https://xmrig.com/wizard" ascii
        $s5 = "--donate-level" ascii
        $s6 = "donate-over-proxy" ascii
        $s7 = "randomx-1gb-pages" ascii
        $s8 = "\"normalHashing\": true" ascii
        $s9 = "set process affinity to CPU core(s), mask 0x3 for cores 0 and 1" ascii
        $s10 = "'h' hashrate, 'p' pause, 'r' resume" ascii
        $s11 = "hwloc topology successfully exported to" ascii
        $s12 = "password for mining server" ascii
    condition:
        2 of ($s*)
}

rule AA_BIN_002_Stratum_Miner_Client
{
    meta:
        id = "AA-BIN-002"
        description = "Stratum mining client (several protocol / algorithm strings)"
        severity = "high"
        reference = "https://github.com/Neo23x0/signature-base/blob/master/yara/pua_cryptocoin_miner.yar"
    strings:
        $u1 = "stratum+tcp://" ascii
        $u2 = "stratum+ssl://" ascii
        $u3 = "stratum+tls://" ascii
        $u4 = "stratum+udp://" ascii
        $u5 = "stratum2+tcp://" ascii
        $m1 = "mining.subscribe" ascii
        $m2 = "mining.authorize" ascii
        $m3 = "mining.notify" ascii
        $m4 = "mining.submit" ascii
        $m5 = "mining.set_difficulty" ascii
        $a1 = "cryptonight" ascii nocase
        $a2 = "RandomX_" ascii
        $a3 = "rx/0" ascii
        $a4 = "argon2/chukwa" ascii
        $a5 = "kheavyhash" ascii
    condition:
        3 of them and (any of ($u*) or 2 of ($m*))
}

rule AA_BIN_003_CPUMiner_Family
{
    meta:
        id = "AA-BIN-003"
        description = "cpuminer / ccminer family"
        severity = "high"
        reference = "https://github.com/Neo23x0/signature-base/blob/master/yara/pua_cryptocoin_miner.yar"
    strings:
        $s1 = "User-Agent: cpuminer/" ascii
        $s2 = "Stratum notify: invalid Merkle branch" ascii
        $s3 = "hash > target (false positive)" ascii
        $s4 = "thread %d: %lu hashes, %s khash/s" ascii
        $s5 = "number of miner threads (default: number of processors)" ascii
        $s6 = "Stratum connection interrupted" ascii
    condition:
        2 of them
}

rule AA_BIN_004_GPU_Miner_Banner
{
    meta:
        id = "AA-BIN-004"
        description = "GPU miner banners (lolMiner, T-Rex, NBMiner, GMiner, TeamRedMiner, PhoenixMiner, SRBMiner, nanominer, BzMiner)"
        severity = "high"
        reference = "https://github.com/chainguard-dev/malcontent/blob/main/rules/malware/family/lolminer.yara"
    strings:
        $n1 = "lolMiner" ascii
        $n2 = "T-Rex NVIDIA GPU miner" ascii
        $n3 = "NBMiner" ascii
        $n4 = "GMiner" ascii
        $n5 = "TeamRedMiner" ascii
        $n6 = "PhoenixMiner" ascii
        $n7 = "SRBMiner-MULTI" ascii
        $n8 = "nanominer" ascii
        $n9 = "BzMiner" ascii
        $l1 = "Maybe then your software is not as friendly and creative as it pretends to be!" ascii
        $f1 = "DevFee" ascii nocase
        $f2 = "dev fee" ascii nocase
        $f3 = "EthereumStratum" ascii
        $f4 = "--dag-build-mode" ascii
    condition:
        $l1 or (any of ($n*) and any of ($f*)) or 2 of ($n*)
}

rule AA_BIN_006_Kinsing_H2Miner
{
    meta:
        id = "AA-BIN-006"
        description = "Kinsing / H2Miner Go loader"
        severity = "critical"
        reference = "https://github.com/Neo23x0/signature-base/blob/master/yara/crime_h2miner_kinsing.yar"
    strings:
        $s1 = "main.backconnect" ascii
        $s2 = "main.masscan" ascii
        $s3 = "main.checkHealth" ascii
        $s4 = "main.redisBrute" ascii
        $s5 = "ActiveC2CUrl" ascii
        $s6 = "main.RC4" ascii
        $s7 = "main.runTask" ascii
        $s8 = "-iL $INPUT --rate $RATE -p$PORT -oL $OUTPUT" ascii
    condition:
        4 of them
}
