package testbroker

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// procCPU is the user+system CPU time of a running process, from
// /proc/PID/stat (Linux; clock ticks of 10 ms).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	// utime and stime are fields 14 and 15 of the whole line.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// CPU is the CPU time the node's nats-server has used so far (0 when it
// is not running), for benchmarks.
func (nd *NATSNode) CPU() time.Duration { return nd.proc.cpu() }

// CPU is the CPU time mosquitto has used so far (0 when it is not
// running), for benchmarks.
func (m *Mosquitto) CPU() time.Duration { return m.proc.cpu() }
