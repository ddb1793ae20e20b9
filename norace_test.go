//go:build !race

package wsgate

const raceEnabled = false
