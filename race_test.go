//go:build race

package wsgate

// raceEnabled: the race detector drops sync.Pool entries at random (gobwas/ws
// pools its buffers), so allocation counts of the raw path only hold
// without it; .ci/run runs the allocation tests without -race too.
const raceEnabled = true
