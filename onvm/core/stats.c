/* stats.c: the files that hold the shared tables and counters.  The
 * manager creates the control file and one stats file per NF slot (owner
 * only, 0600); NFs map the control file read-only and their own stats file
 * read-write; notebooks map everything read-only. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "onvm_core.h"

#define NF_STATS_FILE_SIZE 4096

void *stats_map(const char *path, size_t size, bool writable)
{
	int fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		onvm_set_error("cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	void *p = stats_map_fd(fd, size, writable, path);
	close(fd);
	return p;
}

/* Map an open file (an NF gets its files as fds over nf.sock, so a container
 * needs no path to them); the caller keeps fd.  what names it in errors. */
void *stats_map_fd(int fd, size_t size, bool writable, const char *what)
{
	struct stat st;
	if (fstat(fd, &st) < 0 || (size_t)st.st_size < size) {
		onvm_set_error("%s is not a file of this onvm version", what);
		errno = EPROTO;
		return NULL;
	}
	void *p = mmap(NULL, size, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		int err = errno;
		onvm_set_error("cannot map %s: %s", what, strerror(err));
		errno = err;
		return NULL;
	}
	return p;
}

static int create_file(const char *path, size_t size)
{
	unlink(path); /* a stale one from a crashed manager of this name */
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		onvm_set_error("cannot create %s: %s", path, strerror(errno));
		return -errno;
	}
	if (ftruncate(fd, (off_t)size) < 0) {
		int err = errno;
		onvm_set_error("cannot size %s: %s", path, strerror(err));
		close(fd);
		return -err;
	}
	close(fd);
	return 0;
}

struct onvm_shm *stats_create(const char *path)
{
	if (create_file(path, sizeof(struct onvm_shm)) < 0)
		return NULL;
	struct onvm_shm *shm = stats_map(path, sizeof(struct onvm_shm), true);
	if (shm == NULL)
		return NULL;
	shm->magic = ONVM_SHM_MAGIC;
	shm->version = ONVM_SHM_VERSION;
	return shm;
}

/* One file per slot, so a container NF can be given its own file alone. */
int stats_create_nf_files(const char *fmt, uint32_t n)
{
	RTE_BUILD_BUG_ON(sizeof(struct onvm_nf_stats) > NF_STATS_FILE_SIZE);
	for (unsigned i = 0; i < n; i++) {
		char path[512];
		snprintf(path, sizeof(path), fmt, i);
		int ret = create_file(path, NF_STATS_FILE_SIZE);
		if (ret < 0)
			return ret;
		onvm_mgr.nf_stats[i] = stats_map(path, sizeof(struct onvm_nf_stats), true);
		if (onvm_mgr.nf_stats[i] == NULL)
			return -errno;
	}
	return 0;
}

static inline uint64_t counter(const uint64_t *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

/* Copies the counters rates are made of, with the tick's time, under the
 * seqlock sample_seq (readers: onvm/rates.py). */
static void stats_sample(struct onvm_mgr *m, struct onvm_shm *shm)
{
	uint32_t seq = shm->sample_seq;
	__atomic_store_n(&shm->sample_seq, seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	for (unsigned i = 0; i < shm->max_nfs; i++) {
		struct onvm_nf_slot *s = &shm->nfs[i];
		if (s->state == ONVM_NF_FREE)
			continue;
		const struct onvm_nf_stats *n = m->nf_stats[i];
		s->sample.generation = s->generation;
		s->sample.rx = counter(&n->rx);
		s->sample.tx = counter(&n->tx);
		s->sample.drop = s->rx_drop;
		s->sample.queued = onvm_dp.nf_rx[i] ? rte_ring_count(onvm_dp.nf_rx[i]) : 0;
	}
	for (unsigned p = 0; p < shm->nb_ports; p++) {
		struct onvm_port_slot *ps = &shm->ports[p];
		ps->sample.rx = counter(&ps->rx.rx);
		ps->sample.tx = counter(&ps->tx.tx);
		ps->sample.drop = counter(&ps->rx.rx_drop) + counter(&ps->rx.rx_refused) +
				  counter(&ps->rx.rx_chain_end) + ps->tx.tx_drop;
		ps->sample.queued = onvm_dp.port_tx[p] ? rte_ring_count(onvm_dp.port_tx[p]) : 0;
	}
	shm->sample_ns = shm->tick_ns;
	__atomic_store_n(&shm->sample_seq, seq + 2, __ATOMIC_RELEASE);
}

/* Called by the control tick: what senders count in the exchange (which
 * any NF can write) is copied where only the manager writes, and values
 * that cost too much on the hot path. */
void stats_update(void)
{
	struct onvm_mgr *m = &onvm_mgr;
	struct onvm_shm *shm = m->shm;
	for (unsigned i = 0; i < shm->max_nfs; i++)
		if (shm->nfs[i].state != ONVM_NF_FREE)
			shm->nfs[i].rx_drop = __atomic_load_n(&m->xchg->nf_rx_drop[i], __ATOMIC_RELAXED);
	for (unsigned p = 0; p < shm->nb_ports; p++)
		shm->ports[p].tx.tx_drop = __atomic_load_n(&m->xchg->port_tx_drop[p], __ATOMIC_RELAXED);
	shm->pool_in_use = rte_mempool_in_use_count(m->rte.pool);
	stats_sample(m, shm);
}
