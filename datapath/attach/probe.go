package attach

import "github.com/cilium/ebpf/asm"

var returnZero = asm.Instructions{
	asm.Mov.Imm(asm.R0, 0),
	asm.Return(),
}
