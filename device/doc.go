// Package device is everything kassa-agent does with serial hardware: one
// small Port interface over two drivers (go.bug.st/serial by default,
// tarm/serial as an opt-in), finding a device by name or by USB VID/PID/serial
// number, listing ports for technicians, and a supervision loop that reopens a
// device after it is unplugged and plugged back in (possibly under another
// ttyACM index or COM number).
//
// The drivers differ in how they report timeouts, unplugs and closes; the
// wrappers here normalise that so every caller sees the same contract (see
// Port), and the same test suite runs against both.
package device
