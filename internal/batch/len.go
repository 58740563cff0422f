package batch

// Len is how many items wait to be written.
func (q *Queue[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// Cap is how many items the queue holds at most.
func (q *Queue[T]) Cap() int { return q.size }
