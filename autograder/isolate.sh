#!/bin/sh
# Run inside fresh mount/network/PID/IPC namespaces (see autograder/sandbox.py), as root:
#   isolate.sh UID GID QUOTA BOX HIDDEN... -- TMPFS... -- COMMAND...
# 1. cover every HIDDEN folder with an empty read-only tmpfs;
# 2. give every shared scratch folder (TMPFS: /tmp, /dev/shm, /run/lock...) a private one;
# 3. mount the kernel's own size-limited tmpfs on BOX/private, put the assignment's data
#    files (BOX/data) in its work/ folder, and make it the user's;
# 4. become UID:GID (no new privileges, killed when the parent dies) and exec COMMAND there.
# Every step's failure exits with its own code, which the grader reports.
set -u
uid=$1 gid=$2 quota=$3 box=$4
shift 4
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do
  mount -t tmpfs -o ro,size=4k,mode=000 autograder-hidden "$1" || exit 97
  shift
done
shift
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do
  if [ -d "$1" ]; then
    mount -t tmpfs -o size=256m,mode=1777 autograder-tmp "$1" || exit 98
  fi
  shift
done
shift
mount -t tmpfs -o "size=$quota,mode=0700,uid=$uid,gid=$gid" autograder-work "$box/private" || exit 96
mkdir -p "$box/private/work" "$box/private/home" || exit 95
if [ -d "$box/data" ]; then
  cp -R "$box/data/." "$box/private/work/" || exit 95
fi
chown -R "$uid:$gid" "$box/private" || exit 95
cd "$box/private/work" || exit 95
exec setpriv "--reuid=$uid" "--regid=$gid" --clear-groups --no-new-privs --pdeathsig=KILL -- "$@"
