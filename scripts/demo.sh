#!/usr/bin/env bash
# Warden end to end on one machine: Orthanc (upstream, 127.0.0.1) ← Warden (embedded model + bundle) ← warden send.
# Sends the committed clean and adversarial fixture studies, prints each verdict, shows what reached Orthanc
# and an excerpt of /metrics, then stops both processes by PID. Bounded: every wait has a deadline.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

bash scripts/setup.sh --with-orthanc

WORK=$(mktemp -d "${TMPDIR:-/tmp}/warden-demo.XXXXXX")
ORTHANC_PID=""; WARDEN_PID=""
stop_pid() {  # stop_pid PID NAME: TERM, wait up to 15 s, then KILL
  local pid=$1 name=$2
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || { echo "[demo] $name stopped" >&2; return 0; }; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true; echo "[demo] $name killed" >&2
}
cleanup() {
  stop_pid "$WARDEN_PID" warden
  stop_pid "$ORTHANC_PID" Orthanc
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
wait_http() {  # wait_http URL SECONDS NAME PID
  local url=$1 secs=$2 name=$3 pid=$4
  for _ in $(seq 1 $((secs * 10))); do
    if curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || { echo "[demo] $name exited during start-up" >&2; return 1; }
    sleep 0.1
  done
  echo "[demo] $name not ready after ${secs}s" >&2; return 1
}

# 1. Orthanc on 127.0.0.1 (it binds all interfaces but refuses remote clients), temp storage.
OPORT=$(free_port)
mkdir -p "$WORK/orthanc"
cat > "$WORK/orthanc.json" <<JSON
{"Name":"warden-demo","StorageDirectory":"$WORK/orthanc","IndexDirectory":"$WORK/orthanc",
 "Plugins":["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],"HttpPort":$OPORT,"RemoteAccessAllowed":false,
 "AuthenticationEnabled":false,"DicomServerEnabled":false,"StableAge":3600,
 "DicomWeb":{"Enable":true,"Root":"/dicom-web/","EnableWado":true}}
JSON
ORTHANC_BIN=$(command -v Orthanc || echo /usr/sbin/Orthanc)
"$ORTHANC_BIN" "$WORK/orthanc.json" >"$WORK/orthanc.log" 2>&1 &
ORTHANC_PID=$!
wait_http "http://127.0.0.1:$OPORT/dicom-web/studies" 30 Orthanc "$ORTHANC_PID"
echo "[demo] Orthanc pid $ORTHANC_PID on http://127.0.0.1:$OPORT" >&2

# 2. Warden with the embedded model and bundle (no config file: defaults + environment).
WPORT=$(free_port)
# MALLOC_MMAP_THRESHOLD_: big buffers straight from mmap, returned when freed (RSS stays flat; see docs/performance.md)
MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-131072} MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-2} \
WARDEN_UPSTREAM_URL="http://127.0.0.1:$OPORT/dicom-web" WARDEN_PORT=$WPORT WARDEN_HOST=127.0.0.1 \
WARDEN_STATE_DIR="$WORK/state" \
  node bin/warden.js serve >"$WORK/warden.log" 2>&1 &
WARDEN_PID=$!
wait_http "http://127.0.0.1:$WPORT/readyz" 120 warden "$WARDEN_PID"
echo "[demo] warden pid $WARDEN_PID on http://127.0.0.1:$WPORT (upstream Orthanc)" >&2
URL="http://127.0.0.1:$WPORT/dicom-web"

# 3. The committed fixture studies: clean test studies, successful adversarial studies (every attack and ε),
#    benign shifts and corruptions, and the foreign-source CR radiographs of ../shared/corpus/dicom when present, each
#    group sent through Warden with `warden send`; one line per instance, then a table.
MANIFEST=test/fixtures/lab/manifest.csv
CORRUPTIONS=test/fixtures/lab-corruptions/manifest.csv   # benign corruptions at severities 1-3 (issue 12)
group_files() {  # group_files FILTER → file paths of the fixture rows (or foreign corpus radiographs) matching, one per line
  node -e '
    const fs=require("fs"),path=require("path");const [m,m2,filter]=process.argv.slice(1);
    const read=(f)=>{if(!fs.existsSync(f))return[];const [h,...ls]=fs.readFileSync(f,"utf8").trim().split(/\r?\n/);const c=h.split(",");
      return ls.map(l=>{const v=l.split(",");const r=Object.fromEntries(c.map((k,i)=>[k,v[i]]));r.abs=path.resolve(path.dirname(f),r.file);return r})};
    if(filter==="foreign"){const dir="../shared/corpus/dicom";if(!fs.existsSync(dir))process.exit(0);
      for(const d of fs.readdirSync(dir).sort())for(const r of read(path.join(dir,d,"manifest.csv")))if(["CR","DX"].includes(r.modality))console.log(r.abs);process.exit(0)}
    const rows=filter==="corrupted"?read(m2):read(m);
    const keep={clean:r=>r.kind==="clean"&&r.split==="test",adversarial:r=>r.kind==="adversarial"&&r.success==="1",benign:r=>r.kind==="benign",corrupted:r=>true}[filter];
    for(const r of rows.filter(keep))console.log(r.abs);' "$MANIFEST" "$CORRUPTIONS" "$1"
}
if [ -f "$MANIFEST" ]; then
  : > "$WORK/outcomes.jsonl"
  for group in clean adversarial benign corrupted foreign; do
    mapfile -t FILES < <(group_files "$group")
    [ "${#FILES[@]}" -gt 0 ] || { echo "[demo] no $group rows in $MANIFEST" >&2; continue; }
    echo
    echo "=== $group: ${#FILES[@]} instances → warden → Orthanc ==="
    timeout 300 node bin/warden.js send --json --url "$URL" "${FILES[@]}" | tee -a "$WORK/outcomes.jsonl" | node -e '
      const root=process.argv[1];let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{
      for(const l of s.trim().split("\n").filter(Boolean)){const o=JSON.parse(l);
        console.log(`${(o.outcome==="failed"?(o.httpStatus===0?"NOT SENT":"BLOCKED"):o.outcome.toUpperCase()).padEnd(8)} ${String(o.httpStatus).padEnd(4)} ${o.file.replace(root+"/","")}${o.reason&&o.outcome!=="stored"?"  — "+o.reason:""}`)}})' "$ROOT"
  done
  echo
  echo "=== verdicts by group (fixture manifest × Warden's answers; adversarial evidence blocks, unfamiliarity only flags) ==="
  node -e '
    const fs=require("fs"),path=require("path");const [m,m2,out]=process.argv.slice(1);
    const byFile=new Map();for(const f of [m,m2]){if(!fs.existsSync(f))continue;const [h,...ls]=fs.readFileSync(f,"utf8").trim().split(/\r?\n/);const c=h.split(",");
      for(const l of ls){const v=l.split(",");const r=Object.fromEntries(c.map((k,i)=>[k,v[i]]));byFile.set(path.resolve(path.dirname(f),r.file),r)}}
    const t={};for(const l of fs.readFileSync(out,"utf8").trim().split("\n").filter(Boolean)){const o=JSON.parse(l);if(o.httpStatus===0)continue;const r=byFile.get(path.resolve(o.file))||{kind:"foreign",attack:"CR (other sources)"};
      const g=r.kind==="clean"?"clean (test)":r.kind+" "+r.attack+(r.eps?" ε="+r.eps:"")+(r.severity?" s"+r.severity:"");t[g]=t[g]||{stored:0,adv:0,dom:0,blocked:0};
      const domainOnly=o.outcome==="flagged"&&String(o.reason||"").replace(/^flagged \(forwarded\): /,"").split(";").every(x=>x.trim().startsWith("out_of_domain"));
      t[g][o.outcome==="failed"?"blocked":o.outcome!=="flagged"?"stored":domainOnly?"dom":"adv"]++}
    console.log("group".padEnd(40)+"stored  flagged:adversarial  flagged:domain only  blocked");
    for(const [g,v] of Object.entries(t))console.log(g.padEnd(40)+String(v.stored).padStart(6)+String(v.adv).padStart(21)+String(v.dom).padStart(21)+String(v.blocked).padStart(9));' "$MANIFEST" "$CORRUPTIONS" "$WORK/outcomes.jsonl"
else
  echo "[demo] $MANIFEST not found: sending two shared-corpus files instead" >&2
  timeout 120 node bin/warden.js send --url "$URL" ../shared/corpus/dicom/pydicom/MR_small.dcm ../shared/corpus/dicom/pydicom/MR_truncated.dcm
fi

# 4. What reached Orthanc (QIDO-RS directly on the upstream).
echo
echo "=== what Orthanc holds (QIDO-RS on the upstream) ==="
curl -fsS --max-time 10 "http://127.0.0.1:$OPORT/dicom-web/instances?includefield=00080018" | node -e '
  let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const a=JSON.parse(s||"[]");
  const by={};for(const i of a){const st=i["0020000D"].Value[0];by[st]=(by[st]||0)+1}
  console.log(a.length+" instances in "+Object.keys(by).length+" studies");
  const e=Object.entries(by);for(const [st,n] of e.slice(0,5))console.log("  study "+st+": "+n+" instance(s)");
  if(e.length>5)console.log("  … and "+(e.length-5)+" more studies")})'

# 5. An excerpt of Warden's /metrics.
echo
echo "=== warden /metrics (excerpt) ==="
curl -fsS --max-time 10 "http://127.0.0.1:$WPORT/metrics" | grep -E '^warden_(instances_total|studies_total|flagged_instances_total|upstream_requests_total|requests_total|model_info|errors_total)' || true
echo
echo "[demo] logs: $(grep -c '"event":"instance' "$WORK/warden.log" || true) instance log lines and $(grep -c '"stream":"warden-security"' "$WORK/warden.log" || true) security events (hashed UIDs only)"
echo
echo "=== audit trail (warden audit query --days 1) ==="
node bin/warden.js audit query --db "$WORK/state/audit.sqlite" --days 1 --format jsonl 2>/dev/null | node -e '
  let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const rs=s.trim().split("\n").filter(Boolean).map(JSON.parse);
  const by={};for(const r of rs){const k=r.verdict+(r.quarantine?" (quarantined)":"");by[k]=(by[k]||0)+1}
  console.log(rs.length+" decisions recorded: "+Object.entries(by).map(([k,v])=>v+" "+k).join(", "))})' || true
