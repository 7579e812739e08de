// SPDX-License-Identifier: Apache-2.0

package snapshot

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// cgroupTree returns the ids of the cgroup v2 directory whose id (inode)
// is id and of every cgroup below it.
func cgroupTree(id uint64) (map[uint64]bool, error) {
	root := Cgroup2Root()
	var top string
	tree := map[uint64]bool{}
	err := filepath.WalkDir(root, func(path string, e os.DirEntry, err error) error {
		if err != nil || !e.IsDir() {
			return nil
		}
		var st unix.Stat_t
		if unix.Stat(path, &st) != nil {
			return nil
		}
		if top == "" && st.Ino == id {
			top = path
		}
		if top != "" && (path == top || strings.HasPrefix(path, top+"/")) {
			tree[st.Ino] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if top == "" {
		return nil, fmt.Errorf("no cgroup with id %d below %s", id, root)
	}
	return tree, nil
}

// CgroupIDs returns the id (inode) of every cgroup v2 there is now.
func CgroupIDs() (map[uint64]bool, error) {
	ids := map[uint64]bool{}
	err := filepath.WalkDir(Cgroup2Root(), func(path string, e os.DirEntry, err error) error {
		if err != nil || !e.IsDir() {
			return nil
		}
		var st unix.Stat_t
		if unix.Stat(path, &st) == nil {
			ids[st.Ino] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the cgroup v2 tree: %w", err)
	}
	return ids, nil
}

// Cgroup2Root is where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup
// on most systems, /sys/fs/cgroup/unified on hybrid ones.
func Cgroup2Root() string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if _, rest, ok := strings.Cut(line, " - cgroup2 "); ok && rest != "" {
				if f := strings.Fields(line); len(f) > 4 {
					return f[4]
				}
			}
		}
	}
	return "/sys/fs/cgroup"
}
