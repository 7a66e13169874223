// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// Roles an account holds inside its organization (a bit set).
library Roles {
    uint8 internal constant PUBLISHER = 1;
    uint8 internal constant SOLVER = 2;
    uint8 internal constant CONSUMER = 4;
    uint8 internal constant ALL = 7;
}

/// Errors shared by every CTI contract (the checks live here, callers bubble them up).
error NotMember(address account);
error MissingRole(address account, uint8 role);
error WrongOrg(address account, uint32 org, uint32 requiredOrg);

/// The consortium: organizations, their accounts and roles, and admission or removal by
/// a majority vote of the current member organizations. The deploying operator seeds the
/// founding organizations in the constructor and keeps no privilege afterwards.
contract Membership {
    enum Kind { None, Admit, Remove }
    enum Status { None, Open, Passed, Rejected }

    struct Org {
        string name;
        bool active;
        address[] accounts;
    }

    struct Account {
        uint32 org;
        uint8 roles;
    }

    struct Proposal {
        Kind kind;
        Status status;
        uint32 proposerOrg;
        uint32 targetOrg; // the org to remove, or the id the admitted org received
        string name;
        address[] accounts;
        uint8[] roles;
        uint32[] yes;
        uint32[] no;
    }

    uint32 public orgCount; // org ids are 1..orgCount; 0 means "none"
    uint32 public activeOrgCount;
    uint256 public proposalCount;
    mapping(uint32 => Org) private _orgs;
    mapping(address => Account) private _accounts;
    mapping(uint256 => Proposal) private _proposals;
    mapping(uint256 => mapping(uint32 => bool)) public hasVoted;

    event OrgAdmitted(uint32 indexed org, string name, uint256 indexed proposal);
    event OrgRemoved(uint32 indexed org, uint256 indexed proposal);
    event AccountAdded(uint32 indexed org, address indexed account, uint8 roles);
    event ProposalCreated(uint256 indexed proposal, uint32 indexed proposerOrg, Kind kind, uint32 targetOrg, string name);
    event Voted(uint256 indexed proposal, uint32 indexed org, bool support);
    event ProposalClosed(uint256 indexed proposal, Status status);

    error BadFounding(string why);
    error BadProposal(string why);
    error AccountTaken(address account, uint32 org);
    error NoSuchOrg(uint32 org);
    error NoSuchProposal(uint256 proposal);
    error ProposalNotOpen(uint256 proposal);
    error AlreadyVoted(uint256 proposal, uint32 org);
    error LastMember(uint32 org);
    error TargetCannotVote(uint256 proposal, uint32 org);

    constructor(string[] memory names, address[][] memory accounts, uint8[][] memory roles) {
        if (names.length == 0) revert BadFounding("at least one founding organization is needed");
        if (names.length != accounts.length || names.length != roles.length) {
            revert BadFounding("names, accounts and roles differ in length");
        }
        for (uint256 i = 0; i < names.length; i++) {
            _checkNewOrg(names[i], accounts[i], roles[i]);
            _addOrg(names[i], accounts[i], roles[i], 0);
        }
    }

    // ---- views -------------------------------------------------------------------------

    /// The active org of an account and its roles; (0, 0) for non-members and removed orgs.
    function orgOf(address account) public view returns (uint32 org, uint8 roles) {
        Account memory a = _accounts[account];
        if (a.org == 0 || !_orgs[a.org].active) return (0, 0);
        return (a.org, a.roles);
    }

    /// The org an account was admitted with, even if that org has since been removed.
    function accountOf(address account) external view returns (uint32 org, uint8 roles, bool active) {
        Account memory a = _accounts[account];
        return (a.org, a.roles, a.org != 0 && _orgs[a.org].active);
    }

    function isActive(uint32 id) external view returns (bool) {
        return _orgs[id].active;
    }

    /// Reverts with NotMember or MissingRole unless `account` holds `role`; returns its org.
    function requireRole(address account, uint8 role) public view returns (uint32 org) {
        uint8 roles;
        (org, roles) = orgOf(account);
        if (org == 0) revert NotMember(account);
        if (roles & role != role) revert MissingRole(account, role);
    }

    function orgInfo(uint32 id) external view returns (string memory name, bool active, address[] memory accounts) {
        if (id == 0 || id > orgCount) revert NoSuchOrg(id);
        Org storage o = _orgs[id];
        return (o.name, o.active, o.accounts);
    }

    function proposal(uint256 id) external view returns (Proposal memory) {
        if (id == 0 || id > proposalCount) revert NoSuchProposal(id);
        return _proposals[id];
    }

    // ---- votes -------------------------------------------------------------------------

    /// Propose admitting a new organization; the proposer's org votes yes at once.
    function proposeAdmission(string calldata name, address[] calldata accounts, uint8[] calldata roles)
        external
        returns (uint256 id)
    {
        uint32 voter = requireRole(msg.sender, 0);
        _checkNewOrg(name, accounts, roles);
        id = _newProposal(Kind.Admit, voter, 0, name);
        Proposal storage p = _proposals[id];
        p.accounts = accounts;
        p.roles = roles;
        _vote(id, voter, true);
    }

    /// Propose removing a member organization; the proposer's org votes yes at once.
    /// The target organization has no vote on its own removal: the other members decide (so two
    /// members can part: the proposer's yes is a majority of the one other).
    function proposeRemoval(uint32 target) external returns (uint256 id) {
        uint32 voter = requireRole(msg.sender, 0);
        if (target == 0 || target > orgCount || !_orgs[target].active) revert NoSuchOrg(target);
        if (activeOrgCount == 1) revert LastMember(target);
        if (voter == target) revert BadProposal("an organization cannot propose its own removal");
        id = _newProposal(Kind.Remove, voter, target, _orgs[target].name);
        _vote(id, voter, true);
    }

    /// One vote per organization (any of its accounts). A proposal passes as soon as more
    /// than half of the current member orgs voted yes, and fails once it no longer can.
    function vote(uint256 id, bool support) external {
        uint32 voter = requireRole(msg.sender, 0);
        if (id == 0 || id > proposalCount) revert NoSuchProposal(id);
        _vote(id, voter, support);
    }

    // ---- internals ---------------------------------------------------------------------

    function _newProposal(Kind kind, uint32 proposer, uint32 target, string memory name) private returns (uint256 id) {
        id = ++proposalCount;
        Proposal storage p = _proposals[id];
        p.kind = kind;
        p.status = Status.Open;
        p.proposerOrg = proposer;
        p.targetOrg = target;
        p.name = name;
        emit ProposalCreated(id, proposer, kind, target, name);
    }

    function _vote(uint256 id, uint32 voter, bool support) private {
        Proposal storage p = _proposals[id];
        if (p.status != Status.Open) revert ProposalNotOpen(id);
        if (hasVoted[id][voter]) revert AlreadyVoted(id, voter);
        if (p.kind == Kind.Remove && voter == p.targetOrg) revert TargetCannotVote(id, voter);
        hasVoted[id][voter] = true;
        if (support) p.yes.push(voter);
        else p.no.push(voter);
        emit Voted(id, voter, support);
        // Only votes of orgs that are still members count; a removal's target is no voter.
        uint256 members = activeOrgCount;
        if (p.kind == Kind.Remove && _orgs[p.targetOrg].active) members--;
        uint256 yes = _countActive(p.yes);
        uint256 no = _countActive(p.no);
        if (yes * 2 > members && !_executable(p)) {
            // an admitted account joined another organization meanwhile, or the organization to
            // remove is gone or the last one: the proposal closes instead of staying open forever
            p.status = Status.Rejected;
            emit ProposalClosed(id, Status.Rejected);
        } else if (yes * 2 > members) {
            p.status = Status.Passed;
            emit ProposalClosed(id, Status.Passed);
            _execute(id, p);
        } else if ((members - no) * 2 <= members) {
            p.status = Status.Rejected;
            emit ProposalClosed(id, Status.Rejected);
        }
    }

    function _execute(uint256 id, Proposal storage p) private {
        if (p.kind == Kind.Admit) {
            _checkNewOrg(p.name, p.accounts, p.roles); // accounts may have been taken meanwhile
            p.targetOrg = _addOrg(p.name, p.accounts, p.roles, id);
        } else {
            uint32 target = p.targetOrg;
            if (!_orgs[target].active) revert NoSuchOrg(target);
            if (activeOrgCount == 1) revert LastMember(target);
            _orgs[target].active = false;
            activeOrgCount--;
            emit OrgRemoved(target, id);
        }
    }

    function _executable(Proposal storage p) private view returns (bool) {
        if (p.kind == Kind.Remove) return _orgs[p.targetOrg].active && activeOrgCount > 1;
        for (uint256 i = 0; i < p.accounts.length; i++) {
            (uint32 current,) = orgOf(p.accounts[i]);
            if (current != 0) return false;
        }
        return true;
    }

    function _countActive(uint32[] storage orgs) private view returns (uint256 n) {
        for (uint256 i = 0; i < orgs.length; i++) {
            if (_orgs[orgs[i]].active) n++;
        }
    }

    function _checkNewOrg(string memory name, address[] memory accounts, uint8[] memory roles) private view {
        if (bytes(name).length == 0) revert BadProposal("organization name is empty");
        if (accounts.length == 0) revert BadProposal("an organization needs at least one account");
        if (accounts.length != roles.length) revert BadProposal("accounts and roles differ in length");
        for (uint256 i = 0; i < accounts.length; i++) {
            if (accounts[i] == address(0)) revert BadProposal("zero address account");
            if (roles[i] == 0 || roles[i] > Roles.ALL) revert BadProposal("roles must be a non-empty subset of publisher|solver|consumer (1..7)");
            (uint32 current,) = orgOf(accounts[i]);
            if (current != 0) revert AccountTaken(accounts[i], current);
            for (uint256 j = 0; j < i; j++) {
                if (accounts[j] == accounts[i]) revert BadProposal("duplicate account");
            }
        }
    }

    function _addOrg(string memory name, address[] memory accounts, uint8[] memory roles, uint256 proposalId)
        private
        returns (uint32 id)
    {
        id = ++orgCount;
        activeOrgCount++;
        Org storage o = _orgs[id];
        o.name = name;
        o.active = true;
        o.accounts = accounts;
        emit OrgAdmitted(id, name, proposalId);
        for (uint256 i = 0; i < accounts.length; i++) {
            _accounts[accounts[i]] = Account(id, roles[i]);
            emit AccountAdded(id, accounts[i], roles[i]);
        }
    }
}
