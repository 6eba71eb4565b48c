#!/bin/sh
# The compose stack's simulated fleet: replays the bundled drive cycles and GPS logs in real
# time, shifted to now (--rebase-time), over and over, so the daemon always has live vehicles.
# Overridable for a run outside the container (tests/test_deploy.py does that):
#   SIMULATOR_DATA        directory with cycles/*.csv and recorded/*.csv
#   SIMULATOR_BROKER      broker URL
#   SIMULATOR_KINESTREAM  the command that runs kinestream
set -u
data="${SIMULATOR_DATA:-/opt/kinestream/src/kinestream/data}"
broker="${SIMULATOR_BROKER:-mqtt://mosquitto:1883}"
kinestream="${SIMULATOR_KINESTREAM:-kinestream}"

# Stop every replay loop with the script (as PID 1 in a container, sh ignores SIGTERM unless
# it traps it).
trap 'trap - TERM INT; kill 0' TERM INT

forever() {
  while true; do
    "$@"
    sleep 1
  done
}

# The four cycles start together: one replay merges them by time.
# shellcheck disable=SC2086  # $kinestream may be a command with arguments
forever $kinestream replay "$data"/cycles/*.csv --broker "$broker" --rebase-time &
# One replay per GPS log, so that each vehicle starts now rather than at that day's first fix.
for log in "$data"/recorded/*.csv; do
  # shellcheck disable=SC2086
  forever $kinestream replay "$log" --broker "$broker" --rebase-time &
done
wait
