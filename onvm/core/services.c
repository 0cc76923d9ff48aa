/* services.c: the tables routing reads (default chain, service table with
 * per-service indirection tables), written only by the manager's control
 * loop.  Updates are copy, edit, publish: the manager edits the copy that
 * routing does not use, flips `active`, and starts an RCU grace period; the
 * old copy is edited again only once every reader has left the read
 * section it was in (rte_rcu_qsbr), so no reader ever sees a torn table. */
#include <string.h>

#include "onvm_core.h"

/* How long an update waits for the previous grace period.  Readers stay in
 * a read section for one burst (plus at most the 5 ms backpressure wait),
 * and a dead NF's reader ID is dropped when its death is noticed. */
#define GRACE_WAIT_NS 200000000ull

bool services_grace_over(uint64_t token)
{
	return rte_rcu_qsbr_check(onvm_dp.rcu, token, false) == 1;
}

/* The copy routing does not read, filled from the current one; NULL (and
 * an error) if the last update's grace period is still running. */
struct onvm_tables *services_edit_begin(void)
{
	struct onvm_mgr *m = &onvm_mgr;
	if (m->table_pending) {
		uint64_t deadline = onvm_now_ns() + GRACE_WAIT_NS;
		while (!services_grace_over(m->table_token)) {
			if (onvm_now_ns() > deadline) {
				onvm_set_error("a reader has not finished with the previous tables for %llu ms; "
					       "try again", GRACE_WAIT_NS / 1000000ull);
				return NULL;
			}
			sched_yield();
		}
		m->table_pending = false;
	}
	struct onvm_shm *shm = m->shm;
	struct onvm_tables *next = &shm->tables[!shm->active];
	memcpy(next, &shm->tables[shm->active], sizeof(*next));
	return next;
}

void services_edit_commit(void)
{
	struct onvm_mgr *m = &onvm_mgr;
	__atomic_store_n(&m->shm->active, !m->shm->active, __ATOMIC_RELEASE);
	m->shm->table_updates++;
	m->table_token = rte_rcu_qsbr_start(onvm_dp.rcu);
	m->table_pending = true;
}

static unsigned buckets_of(const struct onvm_service *s, uint16_t slot)
{
	unsigned n = 0;
	for (unsigned b = 0; b < ONVM_RETA_SIZE; b++)
		n += s->reta[b] == slot;
	return n;
}

/* Add an instance: it takes floor(RETA/(n+1)) buckets, each from whichever
 * instance has the most at that moment, so about 1/(n+1) of the flows move
 * and the rest stay where their state is. */
int services_add(struct onvm_tables *t, uint16_t service, uint16_t slot)
{
	if (service == 0 || service >= ONVM_MAX_SERVICES)
		return -EINVAL;
	struct onvm_service *s = &t->services[service];
	if (s->count >= ONVM_MAX_INSTANCES)
		return -ENOSPC;
	if (s->count == 0) {
		memset(s->reta, slot, sizeof(s->reta));
	} else {
		unsigned have[ONVM_MAX_INSTANCES];
		for (unsigned i = 0; i < s->count; i++)
			have[i] = buckets_of(s, s->instances[i]);
		unsigned want = ONVM_RETA_SIZE / (s->count + 1u);
		for (unsigned k = 0; k < want; k++) {
			unsigned top = 0;
			for (unsigned i = 1; i < s->count; i++)
				if (have[i] > have[top])
					top = i;
			/* its last bucket, so repeated adds spread over the table */
			for (int b = ONVM_RETA_SIZE - 1; b >= 0; b--)
				if (s->reta[b] == s->instances[top]) {
					s->reta[b] = (uint8_t)slot;
					break;
				}
			have[top]--;
		}
	}
	s->instances[s->count++] = slot;
	return 0;
}

/* Remove an instance: only its buckets move, each to whichever remaining
 * instance has the fewest at that moment. */
void services_remove(struct onvm_tables *t, uint16_t service, uint16_t slot)
{
	if (service == 0 || service >= ONVM_MAX_SERVICES)
		return;
	struct onvm_service *s = &t->services[service];
	unsigned j = 0;
	for (unsigned i = 0; i < s->count; i++)
		if (s->instances[i] != slot)
			s->instances[j++] = s->instances[i];
	if (j == s->count)
		return;
	s->count = (uint16_t)j;
	if (j == 0) {
		memset(s->reta, 0xff, sizeof(s->reta)); /* no instance: refused */
		return;
	}
	unsigned have[ONVM_MAX_INSTANCES];
	for (unsigned i = 0; i < j; i++)
		have[i] = buckets_of(s, s->instances[i]);
	for (unsigned b = 0; b < ONVM_RETA_SIZE; b++) {
		if (s->reta[b] != slot)
			continue;
		unsigned low = 0;
		for (unsigned i = 1; i < j; i++)
			if (have[i] < have[low])
				low = i;
		s->reta[b] = (uint8_t)s->instances[low];
		have[low]++;
	}
}

/* Check one path's entries: services in range, ports that exist. */
static int check_path(const struct onvm_chain *c, const char *what, unsigned which)
{
	if (c->length > ONVM_MAX_CHAIN) {
		onvm_set_error("%s %u has %u entries; at most %d", what, which, c->length, ONVM_MAX_CHAIN);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < c->length; i++) {
		unsigned action = c->entries[i].action, dest = c->entries[i].destination;
		if (action == ONVM_TO_SERVICE && (dest == 0 || dest >= ONVM_MAX_SERVICES)) {
			onvm_set_error("%s %u, entry %u: service ID %u is out of range 1..%d", what, which, i, dest,
				       ONVM_MAX_SERVICES - 1);
			return -EINVAL;
		}
		if (action == ONVM_TO_PORT && dest >= onvm_mgr.shm->nb_ports) {
			onvm_set_error("%s %u, entry %u: port %u does not exist (ports: 0..%u)", what, which, i, dest,
				       onvm_mgr.shm->nb_ports - 1);
			return -ENODEV;
		}
		if (action != ONVM_TO_SERVICE && action != ONVM_TO_PORT) {
			onvm_set_error("%s %u, entry %u: only services and ports may appear in a path", what, which, i);
			return -EINVAL;
		}
	}
	return 0;
}

int onvm_mgr_set_chain(const uint32_t *verdicts, uint32_t n)
{
	if (n > ONVM_MAX_CHAIN) {
		onvm_set_error("a chain has at most %d entries, got %u", ONVM_MAX_CHAIN, n);
		return -EINVAL;
	}
	struct onvm_chain c = {.length = n};
	for (uint32_t i = 0; i < n; i++) {
		c.entries[i].action = (uint16_t)ONVM_VERDICT_ACTION(verdicts[i]);
		c.entries[i].destination = (uint16_t)ONVM_VERDICT_DEST(verdicts[i]);
	}
	int ret = check_path(&c, "chain", 0);
	if (ret < 0)
		return ret;
	struct onvm_tables *t = services_edit_begin();
	if (t == NULL)
		return -EBUSY;
	/* The simple case of paths: every port's packets follow the same one. */
	for (unsigned p = 0; p < ONVM_MAX_PORTS; p++)
		t->paths[p] = c;
	services_edit_commit();
	return 0;
}

/* Make service s's instances exactly want[]: instances not wanted leave
 * (their buckets go to the others), new ones join (each taking its share),
 * so flows of instances that stay do not move. */
static int set_members(struct onvm_tables *t, const struct onvm_member_set *ms)
{
	struct onvm_service *s = &t->services[ms->service];
	uint16_t have[ONVM_MAX_INSTANCES];
	unsigned n = s->count;
	memcpy(have, s->instances, sizeof(have));
	for (unsigned i = 0; i < n; i++) {
		bool wanted = false;
		for (unsigned j = 0; j < ms->count; j++)
			wanted |= ms->slots[j] == have[i];
		if (!wanted)
			services_remove(t, ms->service, have[i]);
	}
	for (unsigned j = 0; j < ms->count; j++) {
		bool there = false;
		for (unsigned i = 0; i < s->count; i++)
			there |= s->instances[i] == ms->slots[j];
		if (!there && services_add(t, ms->service, ms->slots[j]) < 0)
			return -ENOSPC;
	}
	return 0;
}

int onvm_mgr_apply(const struct onvm_apply *a)
{
	struct onvm_shm *shm = onvm_mgr.shm;
	if (a->nb_members > ONVM_MAX_SERVICES) {
		onvm_set_error("at most %d services per deployment", ONVM_MAX_SERVICES);
		return -EINVAL;
	}
	for (unsigned p = 0; a->set_paths && p < ONVM_MAX_PORTS; p++) {
		int ret = check_path(&a->paths[p], "path of port", p);
		if (ret < 0)
			return ret;
	}
	for (unsigned k = 0; k < a->nb_members; k++) {
		const struct onvm_member_set *ms = &a->members[k];
		if (ms->service == 0 || ms->service >= ONVM_MAX_SERVICES || ms->count > ONVM_MAX_INSTANCES) {
			onvm_set_error("instances of service %u: service out of range or more than %d instances",
				       ms->service, ONVM_MAX_INSTANCES);
			return -EINVAL;
		}
		for (unsigned j = 0; j < ms->count; j++) {
			uint16_t slot = ms->slots[j];
			if (slot >= shm->max_nfs || shm->nfs[slot].state != ONVM_NF_RUNNING ||
			    shm->nfs[slot].service != ms->service) {
				onvm_set_error("instance %u of service %u is not a running NF of that service", slot,
					       ms->service);
				return -EINVAL;
			}
		}
	}
	struct onvm_tables *t = services_edit_begin();
	if (t == NULL)
		return -EBUSY;
	if (a->set_paths)
		memcpy(t->paths, a->paths, sizeof(t->paths));
	if (a->set_steer) {
		memcpy(t->steer, a->steer, sizeof(t->steer));
		memcpy(t->names, a->names, sizeof(t->names));
		for (unsigned s = 0; s < ONVM_MAX_SERVICES; s++)
			t->names[s][sizeof(t->names[s]) - 1] = 0;
	}
	if (a->hop_limit)
		t->hop_limit = a->hop_limit;
	for (unsigned k = 0; k < a->nb_members; k++)
		if (set_members(t, &a->members[k]) < 0) {
			/* not published: the copy is rebuilt from the live one next time */
			onvm_set_error("service %u would have more than %d instances", a->members[k].service,
				       ONVM_MAX_INSTANCES);
			return -ENOSPC;
		}
	services_edit_commit();
	return 0;
}
