package pgfast

import "golang.org/x/sys/unix"

// sameAffinity reports whether process pid runs on the same CPUs as this
// one, and on how many CPUs each runs.
func sameAffinity(pid int) (same bool, self, other int, err error) {
	var mine, theirs unix.CPUSet
	if err := unix.SchedGetaffinity(0, &mine); err != nil {
		return false, 0, 0, err
	}
	if err := unix.SchedGetaffinity(pid, &theirs); err != nil {
		return false, 0, 0, err
	}
	return mine == theirs, mine.Count(), theirs.Count(), nil
}
