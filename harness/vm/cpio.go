package vm

import (
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// cpioWriter writes a "newc" archive, the format the kernel unpacks as an
// initramfs. Archives may be concatenated: the kernel unpacks each in turn.
type cpioWriter struct {
	w    io.Writer
	ino  uint32
	dirs map[string]bool
	err  error
}

func newCPIO(w io.Writer) *cpioWriter {
	return &cpioWriter{w: w, ino: 1, dirs: map[string]bool{"": true, ".": true}}
}

func (c *cpioWriter) header(name string, mode uint32, size int) {
	if c.err != nil {
		return
	}
	c.ino++
	name = strings.TrimPrefix(name, "/")
	h := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	_, c.err = io.WriteString(c.w, h+name+"\x00")
	c.pad(len(h) + len(name) + 1)
}

func (c *cpioWriter) pad(n int) {
	if c.err != nil {
		return
	}
	if r := n % 4; r != 0 {
		_, c.err = c.w.Write(make([]byte, 4-r))
	}
}

// mkdirAll adds name and its parents once each.
func (c *cpioWriter) mkdirAll(name string) {
	name = strings.Trim(path.Clean("/"+name), "/")
	if c.dirs[name] {
		return
	}
	c.mkdirAll(path.Dir(name))
	c.dirs[name] = true
	c.header(name, 0o040755, 0)
}

// file adds a regular file with the given content and permission bits.
func (c *cpioWriter) file(name string, perm uint32, data []byte) {
	c.mkdirAll(path.Dir(name))
	c.header(name, 0o100000|perm, len(data))
	if c.err == nil {
		_, c.err = c.w.Write(data)
	}
	c.pad(len(data))
}

// copyFile adds the host file src as name, keeping its permission bits.
func (c *cpioWriter) copyFile(name, src string) {
	if c.err != nil {
		return
	}
	data, err := os.ReadFile(src)
	if err != nil {
		c.err = err
		return
	}
	st, err := os.Stat(src)
	if err != nil {
		c.err = err
		return
	}
	c.file(name, uint32(st.Mode().Perm()), data)
}

// copyTree adds every regular file below the host directory src under name.
func (c *cpioWriter) copyTree(name, src string) {
	var files []string
	err := walkFiles(src, func(rel string) { files = append(files, rel) })
	if err != nil {
		c.err = err
		return
	}
	sort.Strings(files)
	for _, rel := range files {
		c.copyFile(path.Join(name, rel), path.Join(src, rel))
	}
}

func (c *cpioWriter) symlink(name, target string) {
	c.mkdirAll(path.Dir(name))
	c.header(name, 0o120777, len(target))
	if c.err == nil {
		_, c.err = io.WriteString(c.w, target)
	}
	c.pad(len(target))
}

// close writes the trailer.
func (c *cpioWriter) close() error {
	c.header("TRAILER!!!", 0, 0)
	return c.err
}

func walkFiles(root string, fn func(rel string)) error {
	var walk func(rel string) error
	walk = func(rel string) error {
		ents, err := os.ReadDir(path.Join(root, rel))
		if err != nil {
			return err
		}
		for _, e := range ents {
			r := path.Join(rel, e.Name())
			switch {
			case e.IsDir():
				if err := walk(r); err != nil {
					return err
				}
			case e.Type().IsRegular():
				fn(r)
			}
		}
		return nil
	}
	return walk("")
}
