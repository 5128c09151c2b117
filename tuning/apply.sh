#!/usr/bin/env bash
# Applies the runtime host tuning for the AlphaPulse engine's layout, the settings
# `alphapulse tuning check` judges:
#   - interrupts (and the default IRQ affinity) moved off the engine's tuned cores;
#   - the `performance` frequency governor and no deep C-states on the engine cores;
#   - transparent huge pages on `madvise`;
#   - net.core.busy_poll / busy_read, socket buffer ceilings, vm.swappiness.
# It prints the kernel command line that isolates the tuned cores (isolcpus, nohz_full,
# rcu_nocbs) but never edits the bootloader: that change needs a reboot, and an operator.
#
# The layout and every target value come from the engine (`alphapulse tuning plan`),
# so this script, the check and the systemd unit always agree with the shard map.
#
# Dry run by default: each change is printed as "would set X: old -> new" and nothing
# is written. With --apply (as root) the changes are made; they last until reboot, so
# alphapulse-tuning.service runs this script at every boot.
#
# Usage: apply.sh [--apply] [--binary PATH] [-c CONFIG.toml]
#   The shard map comes from the configuration: SHARD_MAP in the environment (the
#   systemd units read it from /etc/alphapulse/alphapulse.env) or shard_map in CONFIG.
# Exit: 0 done (or planned), 1 a setting could not be applied, 2 bad usage.
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

mode=dry-run
bin=${ALPHAPULSE_BIN:-}
config=
while [ $# -gt 0 ]; do
    case $1 in
        --apply) mode=apply ;;
        --binary)
            [ $# -ge 2 ] || { echo "apply.sh: --binary needs a path" >&2; exit 2; }
            bin=$2
            shift
            ;;
        -c | --config)
            [ $# -ge 2 ] || { echo "apply.sh: $1 needs a file" >&2; exit 2; }
            config=$2
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            echo "apply.sh: unknown argument '$1' (see --help)" >&2
            exit 2
            ;;
    esac
    shift
done

if [ -z "$bin" ]; then
    bin=$(command -v alphapulse || true)
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    echo "apply.sh: cannot find the alphapulse binary: pass --binary PATH or set ALPHAPULSE_BIN" >&2
    exit 2
fi
if [ "$mode" = apply ] && [ "$(id -u)" -ne 0 ]; then
    echo "apply.sh: --apply writes to /proc and /sys and needs root; run it without --apply to see the plan" >&2
    exit 2
fi

args=()
if [ -n "$config" ]; then
    args=(-c "$config")
fi
if ! plan=$("$bin" "${args[@]}" tuning plan); then
    echo "apply.sh: '$bin tuning plan' failed (see above)" >&2
    exit 2
fi

layout= engine_cores= per_cpu_cores= tuned_cores= housekeeping_cores= housekeeping_mask=
kernel_cmdline= governor= thp= idle_max_us= tcp_rmem_min=
at_least=()
at_most=()
while IFS= read -r line; do
    key=${line%% *}
    value=
    [ "$key" = "$line" ] || value=${line#* }
    case $key in
        layout) layout=$value ;;
        engine_cores) engine_cores=$value ;;
        per_cpu_cores) per_cpu_cores=$value ;;
        tuned_cores) tuned_cores=$value ;;
        housekeeping_cores) housekeeping_cores=$value ;;
        housekeeping_mask) housekeeping_mask=$value ;;
        kernel_cmdline) kernel_cmdline=$value ;;
        governor) governor=$value ;;
        transparent_hugepage) thp=$value ;;
        idle_exit_latency_max_us) idle_max_us=$value ;;
        sysctl_at_least) at_least+=("$value") ;;
        sysctl_at_most) at_most+=("$value") ;;
        tcp_rmem_max_at_least) tcp_rmem_min=$value ;;
        *) ;; # Keys from a newer engine are ignored.
    esac
done <<<"$plan"

changes=0
failures=0
refused_irqs=0

# Expands a cpu list (0-3,8) into words (0 1 2 3 8).
expand() {
    local parts=() part out=() a b i
    IFS=, read -ra parts <<<"$1"
    for part in ${parts[@]+"${parts[@]}"}; do
        case $part in
            *-*)
                a=${part%-*}
                b=${part#*-}
                for ((i = a; i <= b; i++)); do out+=("$i"); done
                ;;
            *) out+=("$part") ;;
        esac
    done
    echo "${out[@]+"${out[@]}"}"
}

declare -A tuned=()
for c in $(expand "$tuned_cores"); do tuned[$c]=1; done

# True when cpu list $1 names a tuned core.
on_tuned() {
    local c
    for c in $(expand "$1"); do
        [ -n "${tuned[$c]-}" ] && return 0
    done
    return 1
}

# A hexadecimal cpu mask without group commas and leading zeros, for comparing.
canon() {
    local m=${1//,/}
    while [ "${#m}" -gt 1 ] && [ "${m:0:1}" = 0 ]; do m=${m:1}; done
    echo "$m"
}

# change LABEL FILE OLD NEW: writes NEW to FILE (or says it would).
change() {
    local label=$1 file=$2 old=$3 new=$4
    changes=$((changes + 1))
    if [ "$mode" = dry-run ]; then
        echo "would set $label: $old -> $new"
    elif { printf '%s\n' "$new" >"$file"; } 2>/dev/null; then
        echo "set $label: $old -> $new"
    else
        echo "FAILED to set $label: $old -> $new (the kernel refused the write to $file)"
        failures=$((failures + 1))
    fi
}

keep() {
    echo "keep $1: $2"
}

echo "layout: $layout"
echo "engine cores: ${engine_cores:-none}; tuned: ${tuned_cores:-none}; housekeeping: ${housekeeping_cores:-none}"

# Interrupts off the tuned cores.
if [ -n "$tuned_cores" ]; then
    kept=0
    for dir in /proc/irq/[0-9]*; do
        [ -r "$dir/smp_affinity_list" ] || continue
        list=$(<"$dir/smp_affinity_list") || continue
        if on_tuned "$list"; then
            if [ "$mode" = apply ] && ! { printf '%s\n' "$housekeeping_cores" >"$dir/smp_affinity_list"; } 2>/dev/null; then
                # Per-CPU and kernel-managed interrupts cannot be moved; isolcpus=managed_irq
                # keeps the managed ones away where the driver allows.
                echo "cannot move IRQ ${dir##*/}: $list (a per-CPU or kernel-managed interrupt)"
                refused_irqs=$((refused_irqs + 1))
                changes=$((changes + 1))
            elif [ "$mode" = apply ]; then
                echo "set IRQ ${dir##*/} affinity: $list -> $housekeeping_cores"
                changes=$((changes + 1))
            else
                change "IRQ ${dir##*/} affinity" "$dir/smp_affinity_list" "$list" "$housekeeping_cores"
            fi
        else
            kept=$((kept + 1))
        fi
    done
    [ "$kept" -eq 0 ] || keep "IRQ affinity" "$kept IRQs already off $tuned_cores"
    if default=$(cat /proc/irq/default_smp_affinity 2>/dev/null); then
        if [ "$(canon "$default")" = "$(canon "$housekeeping_mask")" ]; then
            keep "default IRQ affinity" "$default"
        else
            change "default IRQ affinity" /proc/irq/default_smp_affinity "$default" "$housekeeping_mask"
        fi
    fi
    if pidof irqbalance >/dev/null 2>&1; then
        echo "warning: irqbalance is running and will move interrupts back onto $tuned_cores:" \
            "set IRQBALANCE_BANNED_CPULIST=$tuned_cores in /etc/default/irqbalance" \
            "(or /etc/sysconfig/irqbalance) and restart it, or stop it"
    fi
else
    echo "skip IRQ affinity: no core to tune (nothing pinned off core 0)"
fi

# Frequency governor and C-states on the engine cores.
no_cpufreq=()
for c in $(expand "$per_cpu_cores"); do
    gov=/sys/devices/system/cpu/cpu$c/cpufreq/scaling_governor
    if [ -r "$gov" ]; then
        old=$(<"$gov")
        available=$(cat "/sys/devices/system/cpu/cpu$c/cpufreq/scaling_available_governors" 2>/dev/null || echo "$governor")
        if [ "$old" = "$governor" ]; then
            keep "cpu$c governor" "$old"
        elif [[ " $available " == *" $governor "* ]]; then
            change "cpu$c governor" "$gov" "$old" "$governor"
        else
            echo "skip cpu$c governor: the driver offers only: $available"
        fi
    else
        no_cpufreq+=("$c")
    fi
    for state in /sys/devices/system/cpu/cpu"$c"/cpuidle/state[0-9]*; do
        [ -r "$state/latency" ] || continue
        latency=$(<"$state/latency")
        disabled=$(<"$state/disable")
        name=$(<"$state/name")
        if [ "$latency" -gt "$idle_max_us" ] && [ "$disabled" = 0 ]; then
            change "cpu$c idle state $name (${latency} µs) disable" "$state/disable" 0 1
        fi
    done
done
if [ ${#no_cpufreq[@]} -gt 0 ]; then
    echo "skip governor on cpus ${no_cpufreq[*]}: no cpufreq (a VM, or the firmware sets the frequency)"
fi

# Transparent huge pages.
thp_file=/sys/kernel/mm/transparent_hugepage/enabled
if current=$(cat "$thp_file" 2>/dev/null); then
    selected=${current#*[}
    selected=${selected%%]*}
    if [ "$selected" = madvise ] || [ "$selected" = never ]; then
        keep "transparent_hugepage" "$selected"
    else
        change "transparent_hugepage" "$thp_file" "$selected" "$thp"
    fi
else
    echo "skip transparent_hugepage: cannot read $thp_file"
fi

# Sysctls, raised or lowered only towards the target: a host already past it stays.
sysctl_file() { echo "/proc/sys/${1//.//}"; }
for entry in ${at_least[@]+"${at_least[@]}"}; do
    name=${entry% *}
    want=${entry#* }
    file=$(sysctl_file "$name")
    if ! old=$(cat "$file" 2>/dev/null); then
        echo "skip $name: cannot read $file"
    elif [ "$old" -ge "$want" ]; then
        keep "$name" "$old"
    else
        change "$name" "$file" "$old" "$want"
    fi
done
for entry in ${at_most[@]+"${at_most[@]}"}; do
    name=${entry% *}
    want=${entry#* }
    file=$(sysctl_file "$name")
    if ! old=$(cat "$file" 2>/dev/null); then
        echo "skip $name: cannot read $file"
    elif [ "$old" -le "$want" ]; then
        keep "$name" "$old"
    else
        change "$name" "$file" "$old" "$want"
    fi
done
if [ -n "$tcp_rmem_min" ]; then
    file=/proc/sys/net/ipv4/tcp_rmem
    if read -r rmin rdef rmax 2>/dev/null <"$file"; then
        if [ "$rmax" -ge "$tcp_rmem_min" ]; then
            keep "net.ipv4.tcp_rmem" "$rmin $rdef $rmax"
        else
            change "net.ipv4.tcp_rmem" "$file" "$rmin $rdef $rmax" "$rmin $rdef $tcp_rmem_min"
        fi
    else
        echo "skip net.ipv4.tcp_rmem: cannot read $file"
    fi
fi

# Kernel command line: printed, never written.
echo
if [ -n "$kernel_cmdline" ]; then
    missing=()
    running=$(cat /proc/cmdline 2>/dev/null || true)
    for param in $kernel_cmdline; do
        [[ " $running " == *" $param "* ]] || missing+=("$param")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        echo "kernel command line: already isolates $tuned_cores ($kernel_cmdline)"
    else
        echo "kernel command line: to isolate cores $tuned_cores, add these parameters and reboot"
        echo "(this script never edits the bootloader):"
        echo "  $kernel_cmdline"
        echo "  GRUB: append them to GRUB_CMDLINE_LINUX in /etc/default/grub, then run"
        echo "  update-grub (Debian, Ubuntu) or grub2-mkconfig -o /boot/grub2/grub.cfg;"
        echo "  or: grubby --update-kernel=ALL --args=\"$kernel_cmdline\""
    fi
else
    echo "kernel command line: nothing to isolate (no engine core off core 0, or not pinned)"
fi

echo
if [ "$mode" = dry-run ]; then
    echo "dry run: $changes change(s) planned, nothing written; run with --apply as root to make them"
else
    echo "applied: $changes change(s), $failures failed, $refused_irqs IRQ(s) could not be moved"
fi
[ "$failures" -eq 0 ]
