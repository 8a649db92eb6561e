// Command lintel is the Lintel edge gateway. `lintel --help` lists every
// command, `lintel <command> --help` shows one (exit 0); a usage mistake
// exits 2, any other failure 1.
//
//	lintel run --config F      run the gateway
//	lintel demo                everything on loopback with a simulated building
//	lintel check --config F    check a config file; list every problem
//	lintel passwd add|remove|list --file F [NAME]
//	lintel version
//
// One file per command group: run.go (run, reload on SIGHUP), demo.go,
// check.go, audit.go, passwd.go, keys.go (keygen, sign), modbus.go,
// ports.go, buffer.go; main.go holds dispatch, flags and help. Commands
// wire the packages below and hold no business logic.
package main
