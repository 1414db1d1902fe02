# Sourced by image/test-container.sh and image/test-vm.sh: the configuration a test
# appliance runs on. make_test_config SEKISHO CONF_DIR WORK UPSTREAM_URL STATE_DIR LOG_DIR
# writes CONF_DIR/{policy.toml,tls/,device-ca/} (a self-signed server certificate for
# gw.test, a device CA's certificate and CRL, never its key) and a device certificate in
# WORK/laptop.p12.{crt,key}.pem. The policy: / public to the upstream, /staff public but
# only for a device, /.git denied.
make_test_config() {
  local sekisho=$1 conf=$2 work=$3 upstream=$4 state=$5 log=$6
  mkdir -p "$conf/tls" "$conf/device-ca"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=gw.test \
    -addext subjectAltName=DNS:gw.test -keyout "$conf/tls/key.pem" -out "$conf/tls/cert.pem" 2>/dev/null
  "$sekisho" ca init "$work/device-ca" >/dev/null
  "$sekisho" device issue laptop --user alice --ca "$work/device-ca" --out "$work/laptop.p12" >/dev/null
  cp "$work/device-ca/device-ca.pem" "$work/device-ca/device-ca.crl.pem" "$conf/device-ca/"
  cat >"$conf/policy.toml" <<TOML
version = 1

[server]
listen = ["0.0.0.0:8443"]
hostnames = ["gw.test"]
tls_cert = "/etc/sekisho/tls/cert.pem"
tls_key = "/etc/sekisho/tls/key.pem"
device_ca = "/etc/sekisho/device-ca/device-ca.pem"
client_certificates = "request"
trusted_proxies = []
state_dir = "$state"
log_dir = "$log"

[[upstream]]
name = "shop"
url = "$upstream"

[[route]]
name = "shop"
paths = ["/"]
upstream = "shop"
access = "public"

[[route]]
name = "staff"
paths = ["/staff"]
upstream = "shop"
access = "public"
require_device = true

[[route]]
name = "no-git"
paths = ["/.git"]
access = "deny"
TOML
  "$sekisho" policy check "$conf/policy.toml" >/dev/null
}

# A web root for the upstream: "shop page" at /, "staff page" at /staff/.
make_test_www() {
  mkdir -p "$1/staff"
  echo "shop page" >"$1/index.html"
  echo "staff page" >"$1/staff/index.html"
}

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
